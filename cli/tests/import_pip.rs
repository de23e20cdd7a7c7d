//! `envctl import pip`: pip resolves a closure from a loopback simple index through the user's
//! own pip configuration (`PIP_INDEX_URL`), envctl writes one recipe per wheel, and those recipes
//! install and run.

mod common;

use common::fixture::Fixture;
use envctl_testkit::python::{Wheel, serve_simple_index};

#[test]
fn pip_resolves_the_closure_and_the_recipes_install_and_run() {
    let f = Fixture::new();
    f.publish_python("3.11");

    let app = Wheel::new("cheer-app", "2.0", "py3-none-any")
        .file("cheer_app/__init__.py", "import Fancy_Fmt\ndef main():\n    print(Fancy_Fmt.fmt('cheers'))\n")
        .requires("fancy-fmt[color] >=1.0, <2")
        .requires("old-backport ; python_version < \"3.4\"")
        .console_script("cheer", "cheer_app:main");
    let fmt = Wheel::new("Fancy_Fmt", "1.4.post2", "py3-none-any")
        .file(
            "Fancy_Fmt/__init__.py",
            "import colorlib\ndef fmt(s):\n    return colorlib.paint('*' + s + '*')\n",
        )
        .requires("colorlib ~=0.3.1 ; extra == \"color\"");
    let fmt_old = Wheel::new("Fancy_Fmt", "2.0", "py3-none-any").file("Fancy_Fmt/__init__.py", "");
    let color = Wheel::new("colorlib", "0.3.5", "cp311-cp311-manylinux_2_17_x86_64")
        .file("colorlib/__init__.py", "def paint(s):\n    return '[' + s + ']'\n");
    let backport = Wheel::new("old-backport", "1.0", "py2-none-any").file("old_backport.py", "");
    let built: Vec<(Wheel, Vec<u8>)> = [app, fmt, fmt_old, color, backport]
        .into_iter()
        .map(|w| {
            let b = w.build();
            (w, b)
        })
        .collect();
    let refs: Vec<(&Wheel, &[u8])> = built.iter().map(|(w, b)| (w, b.as_slice())).collect();
    let index = serve_simple_index(&f.server, &refs);

    let out_dir = f.sb.path("pypi-recipes");
    let pip_env = [
        ("PIP_INDEX_URL", index.as_str()),
        ("PIP_FIND_LINKS", ""),
        ("PIP_CONFIG_FILE", "/dev/null"),
        ("PIP_NO_CACHE_DIR", "1"),
    ];
    let args = [
        "import",
        "pip",
        "cheer-app==2.0",
        "--python",
        "3.11",
        "--platform",
        "manylinux_2_17_x86_64",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let run = f.sb.run_env(&args, &pip_env).success();
    assert!(run.stderr.contains("wrote 3 recipes"), "{}", run.stderr);

    let read = |p: &str| std::fs::read_to_string(out_dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let app = read("cheer-app/2.0.toml");
    assert!(app.contains("fancy-fmt = \">=1.0,<2\"") && !app.contains("old-backport"), "{app}");
    assert!(app.contains("index = \"pypi\"") && !app.contains("127.0.0.1"), "{app}");
    let fmt = read("fancy-fmt/1.4.post2.toml");
    assert!(fmt.contains("colorlib = \"~=0.3.1\""), "the extra asked for brings its requirement:\n{fmt}");
    let color = read("colorlib/0.3.5.toml");
    assert!(color.contains("python = \"3.11\"") && color.contains("glibc = \">=2.17\""), "{color}");

    // Re-running changes nothing and keeps what is there.
    std::fs::write(out_dir.join("cheer-app/2.0.toml"), format!("{app}# edited by the team\n")).unwrap();
    let run = f.sb.run_env(&args, &pip_env).success();
    assert!(run.stderr.contains("wrote 0 recipes") && run.stderr.contains("3 unchanged"), "{}", run.stderr);
    assert!(read("cheer-app/2.0.toml").ends_with("# edited by the team\n"));

    // The recipes install from the same index and run.
    f.sb.config(&format!("recipes = [\"{}\", \"{}\"]", f.repo.display(), out_dir.display()));
    let p = f.profile("cheer", "[packages]\ncheer-app = \"2.0\"\npython = \"3.11\"\n");
    f.sb.run_env(&["apply", &p], &pip_env).success();
    let out = f.run(&["run", "cheer", "--", "cheer"]).success();
    assert_eq!(out.stdout.trim(), "[*cheers*]");
}
