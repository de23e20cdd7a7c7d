//! Python wheels installed as pip and uv install them: real-layout wheels (with `.data/scripts`,
//! `.data/headers`, entry points, a RECORD and a tag) served on 127.0.0.1, installed over this
//! machine's CPython packed as a package, merged from several recipes, imported and run in
//! sessions.

mod common;

use common::fixture::{Fixture, walk};
use envctl_testkit::python::{Wheel, serve_json_index, serve_simple_index};
use envctl_testkit::sha256_hex;

fn greeter() -> Wheel {
    let w = Wheel::new("Greeter_Lib", "1.2.post1", "py3-none-any");
    let data = w.data_dir();
    w.file("greeter/__init__.py", "from .core import greet\n")
        .file("greeter/core.py", "def greet(who='world'):\n    return 'hello ' + who\n")
        // Some wheels ship bytecode of their own (numpy does); a stale one must not win.
        .file("greeter/__pycache__/core.cpython-311.pyc", "not bytecode for this interpreter")
        .file(
            "greeter/cli.py",
            "import sys\nfrom . import greet\ndef main():\n    print(greet(*sys.argv[1:2]))\n    return 0\n",
        )
        .file(
            &format!("{data}/scripts/greet-raw"),
            "#!python\nimport greeter\nprint('raw', greeter.greet())\n",
        )
        .file(&format!("{data}/headers/greeter.h"), "#define GREETER 1\n")
        .file(&format!("{data}/data/share/greeter/motd"), "be kind\n")
        .console_script("greet", "greeter.cli:main")
}

fn shouter() -> Wheel {
    Wheel::new("shouter", "0.3.1", "py3-none-any")
        .file("shouter.py", "import greeter\ndef shout():\n    return greeter.greet().upper()\n")
        .file("shouter-0.3.1.pth", "import sys; sys.shouter_pth = True\n")
        .requires("greeter-lib ~=1.2")
}

#[test]
fn wheels_install_into_the_profile_python_and_run_in_sessions() {
    let f = Fixture::new();
    let version = f.publish_python("3.11");
    let (g, s) = (greeter(), shouter());
    f.publish_wheel(&g, &g.build(), "python = \">=3.7\"");
    f.publish_wheel(&s, &s.build(), "Greeter_Lib = \"~=1.2\"\npython = \">=3.7\"");
    let p = f.profile("py", "[packages]\nshouter = \"*\"\npython = \"3.11\"\n");
    f.run(&["apply", &p]).success();
    let store = f.sb.path("envctl/store");
    let before = walk(&store).len();

    // Importable, with metadata, through the profile's own python3.
    let code = "import greeter, shouter, sys, importlib.metadata as m; \
                print(shouter.shout(), m.version('greeter-lib'), m.version('shouter'), sys.shouter_pth, sys.prefix != sys.base_prefix)";
    let out = f.run(&["run", "py", "--", "python3", "-c", code]).success();
    assert_eq!(out.stdout.trim(), "HELLO WORLD 1.2.post1 0.3.1 True True", "{}", out.stderr);

    // The console script and the #!python script run with the profile's interpreter.
    let out = f.run(&["run", "py", "--", "greet", "team"]).success();
    assert_eq!(out.stdout.trim(), "hello team");
    let out = f.run(&["run", "py", "--", "greet-raw"]).success();
    assert_eq!(out.stdout.trim(), "raw hello world");

    // The schemes landed where the spec says; site-packages is the Python's own.
    let gen_dir = std::fs::canonicalize(f.profiles_dir().join("py")).unwrap();
    let site = gen_dir.join("lib/python3.11/site-packages");
    assert!(site.join("greeter/core.py").exists() && site.join("shouter.py").exists());
    assert!(site.join("Greeter_Lib-1.2.post1.dist-info/RECORD").exists());
    assert!(gen_dir.join("include/Greeter_Lib/greeter.h").exists(), "{:?}", walk(&gen_dir.join("include")));
    assert_eq!(std::fs::read_to_string(gen_dir.join("share/greeter/motd")).unwrap(), "be kind\n");
    assert!(gen_dir.join("pyvenv.cfg").exists());

    // Bytecode is there, for this interpreter, and nothing was written into the store by runs.
    let pyc = site.join("greeter/__pycache__/core.cpython-311.pyc");
    assert!(pyc.exists(), "{:?}", walk(&site.join("greeter")));
    assert_eq!(walk(&store).len(), before, "a session wrote into the store");
    f.run(&["store", "verify"]).success();
    let _ = version;
}

#[test]
fn bytecode_is_the_same_wherever_and_whenever_it_is_compiled() {
    let mut hashes = Vec::new();
    for _ in 0..2 {
        let f = Fixture::new();
        f.publish_python("3.11");
        let g = greeter();
        f.publish_wheel(&g, &g.build(), "python = \">=3.7\"");
        let p = f.profile("py", "[packages]\ngreeter-lib = \"*\"\npython = \"3.11\"\n");
        f.run(&["apply", &p]).success();
        let store = f.sb.path("envctl/store");
        let mut names: Vec<String> = std::fs::read_dir(&store)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("bytecode"))
            .collect();
        names.sort();
        assert_eq!(names.len(), 1, "{names:?}");
        hashes.push(names.pop().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(hashes[0], hashes[1], "bytecode store paths differ between two sandboxes");
}

#[test]
fn a_file_not_the_size_record_lists_refuses_the_wheel_naming_the_file() {
    let f = Fixture::new();
    f.publish_python("3.11");
    let g = greeter();
    let bytes = g.build_with(Some(("greeter/core.py", b"def greet(who='world'):\n    return 'pwned'\n")));
    f.publish_wheel(&g, &bytes, "python = \">=3.7\"");
    let p = f.profile("py", "[packages]\ngreeter-lib = \"*\"\npython = \"3.11\"\n");
    let out = f.run(&["apply", &p]).failure();
    assert!(out.stderr.contains("greeter/core.py") && out.stderr.contains("RECORD"), "{}", out.stderr);
    assert!(out.stderr.contains("bytes where the wheel's RECORD lists"), "{}", out.stderr);
    assert!(!f.profiles_dir().join("py").exists());
}

/// RECORD's hashes are not computed again (python/src/wheel.rs): the recipe's sha256 of the whole
/// wheel is what pins its bytes. A file changed to another of the same size after RECORD was
/// written installs, as pip and uv install it; the recipe's hash is what refuses a swapped wheel.
#[test]
fn record_hashes_are_not_computed_the_recipes_sha256_pins_the_wheel() {
    let f = Fixture::new();
    f.publish_python("3.11");
    let g = greeter();
    let same_size = b"def greet(who='world'):\n    return 'HELLO ' + who\n";
    let bytes = g.build_with(Some(("greeter/core.py", same_size)));
    f.publish_wheel(&g, &bytes, "python = \">=3.7\"");
    let p = f.profile("py", "[packages]\ngreeter-lib = \"*\"\npython = \"3.11\"\n");
    f.run(&["apply", &p]).success();
    let out =
        f.run(&["run", "py", "--", "python3", "-c", "import greeter; print(greeter.greet())"]).success();
    assert_eq!(out.stdout.trim(), "HELLO world");
}

#[test]
fn one_pure_wheel_serves_a_3_7_and_a_3_11_profile() {
    let f = Fixture::new();
    f.publish_python("3.7");
    f.publish_python("3.11");
    let g = greeter();
    f.publish_wheel(&g, &g.build(), "python = \">=3.7\"");
    let old = f.profile("old", "[packages]\ngreeter-lib = \"*\"\npython = \"3.7\"\n");
    let new = f.profile("new", "[packages]\ngreeter-lib = \"*\"\npython = \"3.11\"\n");
    f.run(&["apply", &old]).success();
    f.run(&["apply", &new]).success();
    for (profile, want) in [("old", "3.7"), ("new", "3.11")] {
        let code = "import sys, greeter; print('%d.%d' % sys.version_info[:2], greeter.greet())";
        let out = f.run(&["run", profile, "--", "python3", "-c", code]).success();
        assert_eq!(out.stdout.trim(), format!("{want} hello world"), "{}", out.stderr);
        let out = f.run(&["run", profile, "--", "greet", "x"]).success();
        assert_eq!(out.stdout.trim(), "hello x");
    }
    // One store path for the wheel, one bytecode path per interpreter.
    let store = f.sb.path("envctl/store");
    let names: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.iter().filter(|n| n.ends_with("-greeter-lib-1.2.post1")).count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| n.contains("greeter-lib-bytecode")).count(), 2, "{names:?}");
    let old_gen = std::fs::canonicalize(f.profiles_dir().join("old")).unwrap();
    assert!(old_gen.join("lib/python3.7/site-packages/greeter/__pycache__/core.cpython-37.pyc").exists());
}

#[test]
fn a_wheel_that_cannot_run_on_the_profile_python_or_machine_is_refused_at_lock_naming_the_tag() {
    let f = Fixture::new();
    let fake = "0".repeat(64);
    for version in ["3.7.16", "3.11.7"] {
        std::fs::write(
            f.repo.join(format!("python-{version}.toml")),
            format!("name = \"python\"\nversion = \"{version}\"\n[[source]]\nurl = \"https://example.invalid/p.tar\"\nsha256 = \"{fake}\"\n"),
        )
        .unwrap();
    }
    let recipe = |name: &str, file: &str| {
        std::fs::write(
            f.repo.join(format!("{name}.toml")),
            format!("name = \"{name}\"\nversion = \"1.0\"\n[[source]]\nurl = \"https://example.invalid/{file}\"\nsha256 = \"{fake}\"\n"),
        )
        .unwrap();
    };
    recipe("fast", "fast-1.0-cp311-cp311-manylinux_2_17_x86_64.whl");
    recipe("new-glibc", "new_glibc-1.0-cp37-cp37m-manylinux_2_28_x86_64.whl");

    let p = f.profile("old", "[packages]\nfast = \"*\"\npython = \"3.7\"\n");
    let err = f.run(&["lock", &p]).failure().stderr;
    assert!(err.contains("cp311") && err.contains("3.7") && err.contains("fast 1.0"), "{err}");

    let p = f.profile("glibc", "[packages]\nnew-glibc = \"*\"\npython = \"3.7\"\n");
    let err = f.sb.run_env(&["lock", &p], &[("ENVCTL_SYSTEM_GLIBC", "2.17")]).failure().stderr;
    assert!(err.contains("manylinux_2_28_x86_64") && err.contains("2.17"), "{err}");
    // The same wheel on a machine with a newer glibc locks.
    f.sb.run_env(&["lock", &p], &[("ENVCTL_SYSTEM_GLIBC", "2.31")]).success();

    let p = f.profile("right", "[packages]\nfast = \"*\"\npython = \"3.11\"\n");
    f.run(&["lock", &p]).success();
}

/// A fixture with python 3.11 and `greeter-lib` as an index source (`index = "pypi"`).
fn index_fixture() -> (Fixture, Wheel, Vec<u8>, String) {
    let f = Fixture::new();
    f.publish_python("3.11");
    let g = greeter();
    let bytes = g.build();
    let file = g.file_name();
    std::fs::write(
        f.repo.join("greeter.toml"),
        format!(
            "name = \"greeter-lib\"\nversion = \"1.2.post1\"\n[dependencies]\npython = \">=3.7\"\n[[source]]\nindex = \"pypi\"\nfilename = \"{file}\"\nsha256 = \"{}\"\n",
            sha256_hex(&bytes)
        ),
    )
    .unwrap();
    (f, g, bytes, file)
}

#[test]
fn a_recipe_names_an_index_and_a_file_and_the_configuration_says_where_the_index_is() {
    let (f, g, bytes, file) = index_fixture();
    let simple = serve_simple_index(&f.server, &[(&g, &bytes)]);
    let p = f.profile("py", "[packages]\ngreeter-lib = \"*\"\npython = \"3.11\"\n");

    // No index configured anywhere (the machine's own pip variables are cleared): a clear error.
    let none = [("PIP_INDEX_URL", ""), ("PIP_FIND_LINKS", ""), ("PIP_CONFIG_FILE", "/dev/null")];
    let err = f.sb.run_env(&["apply", &p], &none).failure().stderr;
    assert!(err.contains("`pypi`") && err.contains("[indexes]") && err.contains("PIP_INDEX_URL"), "{err}");

    // pip configured with find-links only: that directory is searched, and the error says where
    // `pypi` came from and that pip's default index is not assumed.
    let links = f.sb.path("find-links");
    std::fs::create_dir_all(&links).unwrap();
    let links = links.display().to_string();
    let only_links =
        [("PIP_INDEX_URL", ""), ("PIP_FIND_LINKS", links.as_str()), ("PIP_CONFIG_FILE", "/dev/null")];
    let err = f.sb.run_env(&["apply", &p], &only_links).failure().stderr;
    assert!(
        err.contains(&format!("{links}: no `{file}` there"))
            && err.contains("find-links from PIP_FIND_LINKS")
            && err.contains("envctl assumes no default index"),
        "{err}"
    );

    // pip's own configuration is enough for `pypi`: a simple repository on loopback. A dry run
    // says how large the wheel is, from the index (its page, then the file's length).
    let pip = [("PIP_INDEX_URL", simple.as_str()), ("PIP_FIND_LINKS", ""), ("PIP_CONFIG_FILE", "/dev/null")];
    let dry = f.sb.run_env(&["apply", "--dry-run", &p], &pip).success();
    assert!(dry.stdout.contains(&format!("index://pypi/{file} (2.6 KiB)")), "{}", dry.stdout);
    assert_eq!(f.server.heads(&format!("/files/{file}")), 1, "the HTML index gives no size: asked with HEAD");
    // A JSON index (PEP 691) gives the size with the link (PEP 700): nothing more is asked.
    let json = serve_json_index(&f.server, &[(&g, &bytes)]);
    let by_json =
        [("PIP_INDEX_URL", json.as_str()), ("PIP_FIND_LINKS", ""), ("PIP_CONFIG_FILE", "/dev/null")];
    let dry = f.sb.run_env(&["apply", "--dry-run", &p], &by_json).success();
    assert!(dry.stdout.contains(&format!("index://pypi/{file} (2.6 KiB)")), "{}", dry.stdout);
    assert_eq!(f.server.heads(&format!("/files/{file}")), 1, "no HEAD after the JSON page");
    f.sb.run_env(&["apply", &p], &pip).success();
    let out = f.run(&["run", "py", "--", "greet", "index"]).success();
    assert_eq!(out.stdout.trim(), "hello index");
    // The lock names the index and the file, not the host.
    let lock = std::fs::read_to_string(f.sb.path("py.lock")).unwrap();
    assert!(lock.contains(&format!("url = \"index://pypi/{file}\"")), "{lock}");

    // envctl's own [indexes] may name a local directory of wheels (a fresh store fetches from it).
    let (f, _, bytes, file) = index_fixture();
    let wheels = f.sb.path("wheelhouse");
    std::fs::create_dir_all(&wheels).unwrap();
    std::fs::write(wheels.join(&file), &bytes).unwrap();
    f.sb.config(&format!(
        "recipes = [\"{}\"]\n[indexes]\npypi = [\"{}\"]\n",
        f.repo.display(),
        wheels.display()
    ));
    let p = f.profile("py", "[packages]\ngreeter-lib = \"*\"\npython = \"3.11\"\n");
    f.sb.run_env(&["apply", &p], &none).success();
    let out = f.run(&["run", "py", "--", "greet", "local"]).success();
    assert_eq!(out.stdout.trim(), "hello local");
}

#[test]
fn damaged_bytecode_is_compiled_again_by_verify_repair() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    f.publish_python("3.11");
    let g = greeter();
    f.publish_wheel(&g, &g.build(), "python = \">=3.7\"");
    let p = f.profile("py", "[packages]\ngreeter-lib = \"*\"\npython = \"3.11\"\n");
    f.run(&["apply", &p]).success();
    let store = f.sb.store();
    let bytecode =
        f.sb.store_paths_on_disk().into_iter().find(|n| n.contains("-greeter-lib-bytecode-")).unwrap();
    let pyc = store.join(&bytecode).join("site-packages/greeter/__pycache__/core.cpython-311.pyc");
    let good = std::fs::read(&pyc).unwrap();
    std::fs::set_permissions(&pyc, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&pyc, b"not bytecode").unwrap();
    std::fs::set_permissions(&pyc, std::fs::Permissions::from_mode(0o444)).unwrap();
    let err = f.run(&["store", "verify"]).failed().to_owned();
    assert!(err.contains(&bytecode), "{err}");
    f.run(&["store", "verify", "--repair"]).success();
    f.run(&["store", "verify"]).success();
    assert_eq!(std::fs::read(&pyc).unwrap(), good);
}

#[test]
fn wheels_sharing_a_namespace_file_of_one_content_merge_and_of_two_contents_collide() {
    // NVIDIA's nvidia-*-cu12 wheels each ship the same empty `nvidia/__init__.py`.
    let f = Fixture::new();
    f.publish_python("3.11");
    let runtime = Wheel::new("nvidia-cuda-runtime-cu12", "12.2.140", "py3-none-manylinux1_x86_64")
        .file("nvidia/__init__.py", "")
        .file("nvidia/cuda_runtime/__init__.py", "NAME = 'cudart'\n");
    let cudnn = Wheel::new("nvidia-cudnn-cu12", "8.9.4.25", "py3-none-manylinux1_x86_64")
        .file("nvidia/__init__.py", "")
        .file("nvidia/cudnn/__init__.py", "NAME = 'cudnn'\n");
    f.publish_wheel(&runtime, &runtime.build(), "python = \">=3\"");
    f.publish_wheel(&cudnn, &cudnn.build(), "python = \">=3\"");
    let p = f.profile(
        "gpu",
        "[packages]\npython = \"3.11\"\nnvidia-cuda-runtime-cu12 = \"*\"\nnvidia-cudnn-cu12 = \"*\"\n",
    );
    f.run(&["apply", &p]).success();
    let code = "import nvidia.cuda_runtime as a, nvidia.cudnn as b; print(a.NAME, b.NAME)";
    let out = f.run(&["run", "gpu", "--", "python3", "-c", code]).success();
    assert_eq!(out.stdout.trim(), "cudart cudnn", "{}", out.stderr);

    // The same path with two contents is still a collision, named.
    let other = Wheel::new("nvidia-other-cu12", "1.0", "py3-none-any")
        .file("nvidia/__init__.py", "print('not empty')\n")
        .file("nvidia/other/__init__.py", "");
    f.publish_wheel(&other, &other.build(), "python = \">=3\"");
    let p = f.profile(
        "clash",
        "[packages]\npython = \"3.11\"\nnvidia-cudnn-cu12 = \"*\"\nnvidia-other-cu12 = \"*\"\n",
    );
    let run = f.run(&["apply", &p]).failure();
    let e = run.failed();
    assert!(e.contains("both ship") && e.contains("nvidia/__init__.py"), "{e}");
}

#[test]
fn a_wheel_that_claims_to_be_another_distribution_is_refused_naming_both() {
    let f = Fixture::new();
    f.publish_python("3.11");
    // `goodpkg-1.0-py3-none-any.whl` that holds `numpy/` and `numpy-9.9.dist-info`.
    let fake = Wheel::new("numpy", "9.9", "py3-none-any").file("numpy/__init__.py", "FAKE = True\n");
    let bytes = fake.build();
    let url = f.server.serve("/wheels/goodpkg-1.0-py3-none-any.whl", bytes.clone());
    let recipe = format!(
        "name = \"goodpkg\"\nversion = \"1.0\"\n[dependencies]\npython = \">=3\"\n[[source]]\nurl = \"{url}\"\nsha256 = \"{}\"\n",
        sha256_hex(&bytes)
    );
    std::fs::write(f.repo.join("goodpkg-1.0.toml"), recipe).unwrap();
    let p = f.profile("good", "[packages]\ngoodpkg = \"1.0\"\npython = \"3.11\"\n");
    let run = f.run(&["apply", &p]).failure();
    let e = run.failed();
    assert!(
        e.contains("numpy-9.9.dist-info") && e.contains("`numpy 9.9`") && e.contains("`goodpkg 1.0`"),
        "{e}"
    );
    assert!(
        !f.sb.store_paths_on_disk().iter().any(|n| n.contains("goodpkg")),
        "{:?}",
        f.sb.store_paths_on_disk()
    );

    // The right dist-info beside a second one that speaks for another distribution.
    let two = Wheel::new("goodpkg", "1.0", "py3-none-any")
        .file("goodpkg/__init__.py", "")
        .file("numpy-9.9.dist-info/METADATA", "Metadata-Version: 2.1\nName: numpy\nVersion: 9.9\n");
    let bytes = two.build();
    let url = f.server.serve("/wheels/goodpkg-1.0-py3-none-any.whl", bytes.clone());
    let recipe = format!(
        "name = \"goodpkg\"\nversion = \"1.0\"\n[dependencies]\npython = \">=3\"\n[[source]]\nurl = \"{url}\"\nsha256 = \"{}\"\n",
        sha256_hex(&bytes)
    );
    std::fs::write(f.repo.join("goodpkg-1.0.toml"), recipe).unwrap();
    std::fs::remove_file(f.sb.path("good.lock")).ok();
    let run = f.run(&["apply", &p]).failure();
    let e = run.failed();
    assert!(e.contains("a second `.dist-info`") && e.contains("numpy-9.9.dist-info"), "{e}");
}

#[test]
fn an_index_page_that_fails_for_a_moment_is_read_again() {
    let (f, g, bytes, file) = index_fixture();
    let simple = serve_simple_index(&f.server, &[(&g, &bytes)]);
    let body = format!("<a href=\"../../files/{file}#sha256={}\">{file}</a>", sha256_hex(&bytes));
    f.server.set(
        "/simple/greeter-lib/",
        envctl_testkit::Reply::FailThen { status: 503, times: 2, body: body.into_bytes() },
    );
    let p = f.profile("py", "[packages]\ngreeter-lib = \"*\"\npython = \"3.11\"\n");
    let pip = [("PIP_INDEX_URL", simple.as_str()), ("PIP_FIND_LINKS", ""), ("PIP_CONFIG_FILE", "/dev/null")];
    let run = f.sb.run_env(&["apply", &p], &pip).success();
    assert!(run.stderr.contains("retry 1"), "{}", run.stderr);
    assert_eq!(f.server.hits("/simple/greeter-lib/"), 3, "two failures, then the page");
}
