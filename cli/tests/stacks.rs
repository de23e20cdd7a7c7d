//! The two-team story over artifacts shaped like the real ones: a TensorFlow-1-shaped profile
//! (CPython 3.7, a `tensorflow-gpu` cp37 wheel, CUDA 10.0 and cuDNN 7.6 as conda packages imported
//! from a channel) and a TensorFlow-2-shaped one (CPython 3.11, a `tensorflow` cp311 wheel, CUDA
//! 12 as NVIDIA's `nvidia-cuda-runtime-cu12` wheel) applied side by side; each session's framework
//! loads its own `libcudart` (real shared objects compiled here, answering
//! `cudaRuntimeGetVersion` as CUDA's do) and cannot load the other's.

mod common;

use common::fixture::Fixture;
use envctl_testkit::python::Wheel;
use envctl_testkit::{Archive, Entry, sha256_hex};

/// A shared object with `soname` whose `symbol(int *)` writes `value`, as CUDA's and cuDNN's
/// version calls do (`cudnnGetVersion` returns it instead: `returns`).
fn shared_object(soname: &str, symbol: &str, value: i32, returns: bool) -> Vec<u8> {
    let dir = envctl_testkit::tempdir();
    let body = if returns {
        format!("long {symbol}(void) {{ return {value}; }}\n")
    } else {
        format!("int {symbol}(int *v) {{ *v = {value}; return 0; }}\n")
    };
    std::fs::write(dir.path().join("lib.c"), body).unwrap();
    let out = dir.path().join("lib.so");
    let status = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(format!("-Wl,-soname,{soname}"))
        .arg(dir.path().join("lib.c"))
        .status()
        .expect("a C compiler (cc) builds the fixture libraries");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// An extension module as TensorFlow 2 builds them: linked against `libcudart.so.12` (the bytes
/// given), found at run time through `$ORIGIN/../../nvidia/cuda_runtime/lib`, the run path the
/// real `libtensorflow_framework.so.2` carries; `tf_cuda_version()` asks the runtime.
fn extension_module(cudart: &[u8]) -> Vec<u8> {
    let dir = envctl_testkit::tempdir();
    std::fs::write(dir.path().join("libcudart.so.12"), cudart).unwrap();
    std::fs::write(
        dir.path().join("pywrap.c"),
        "int cudaRuntimeGetVersion(int *);\nint tf_cuda_version(void) { int v = 0; cudaRuntimeGetVersion(&v); return v; }\n",
    )
    .unwrap();
    let out = dir.path().join("_pywrap.so");
    let status = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(dir.path().join("pywrap.c"))
        .arg(format!("-L{}", dir.path().display()))
        .arg("-l:libcudart.so.12")
        .arg("-Wl,--enable-new-dtags,-rpath,$ORIGIN/../../nvidia/cuda_runtime/lib")
        .status()
        .expect("a C compiler (cc) builds the fixture libraries");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// What the frameworks' `__init__.py` do here: load the CUDA runtime (and cuDNN) the way each
/// TensorFlow generation does, and report their versions.
const TF1: &str = r#"
import ctypes
def versions():
    # TensorFlow 1.15 dlopens by soname: the session's library path must lead to CUDA 10.0.
    cudart = ctypes.CDLL("libcudart.so.10.0")
    v = ctypes.c_int()
    assert cudart.cudaRuntimeGetVersion(ctypes.byref(v)) == 0
    cudnn = ctypes.CDLL("libcudnn.so.7")
    cudnn.cudnnGetVersion.restype = ctypes.c_long
    return v.value, cudnn.cudnnGetVersion()
"#;

const TF2: &str = r#"
import ctypes, os
def versions():
    # TensorFlow 2's extension modules reach the CUDA of its nvidia-* wheels through their run
    # paths ($ORIGIN/../../nvidia/...), from wherever the profile put the package.
    lib = ctypes.CDLL(os.path.join(os.path.dirname(__file__), "python", "_pywrap.so"))
    return (lib.tf_cuda_version(),)
"#;

/// The channel: cudatoolkit 10.0.130 and cudnn 7.6.5 for CUDA 10.0 as conda v1 packages, laid
/// out as Anaconda's are (`lib/` with the soname links, `info/`).
fn publish_conda_channel(f: &Fixture) {
    let toolkit = Archive::new()
        .with(Entry::file("info/index.json", "{\"name\": \"cudatoolkit\"}"))
        .with(Entry::file(
            "lib/libcudart.so.10.0.130",
            shared_object("libcudart.so.10.0", "cudaRuntimeGetVersion", 10000, false),
        ))
        .with(Entry::symlink("lib/libcudart.so.10.0", "libcudart.so.10.0.130"))
        .tar_bz2();
    let cudnn = Archive::new()
        .with(Entry::file("info/index.json", "{\"name\": \"cudnn\"}"))
        .with(Entry::file(
            "lib/libcudnn.so.7.6.5",
            shared_object("libcudnn.so.7", "cudnnGetVersion", 7605, true),
        ))
        .with(Entry::symlink("lib/libcudnn.so.7", "libcudnn.so.7.6.5"))
        .tar_bz2();
    let record = |name: &str, version: &str, build: &str, depends: &[&str], bytes: &[u8]| serde_json::json!({"name": name, "version": version, "build": build, "depends": depends, "sha256": sha256_hex(bytes), "md5": "0"});
    let repodata = serde_json::json!({"info": {"subdir": "linux-64"}, "packages": {
        "cudatoolkit-10.0.130-0.tar.bz2": record("cudatoolkit", "10.0.130", "0", &[], &toolkit),
        "cudnn-7.6.5-cuda10.0_0.tar.bz2": record("cudnn", "7.6.5", "cuda10.0_0", &["cudatoolkit >=10.0,<10.1"], &cudnn),
    }});
    f.server.serve("/channel/linux-64/cudatoolkit-10.0.130-0.tar.bz2", toolkit);
    f.server.serve("/channel/linux-64/cudnn-7.6.5-cuda10.0_0.tar.bz2", cudnn);
    f.server.serve("/channel/linux-64/repodata.json", repodata.to_string().into_bytes());
}

#[test]
fn a_tensorflow_1_and_a_tensorflow_2_shaped_profile_each_load_their_own_cuda_runtime() {
    let f = Fixture::new();
    f.publish_python("3.7");
    f.publish_python("3.11");
    publish_conda_channel(&f);
    let site = f.sb.path("site-recipes");
    f.run(&[
        "import",
        "conda",
        &f.server.url("/channel"),
        "cudatoolkit=10.0.130",
        "cudnn=7.6.5",
        "--out",
        site.to_str().unwrap(),
    ])
    .success();
    std::fs::write(
        f.sb.path("config.toml"),
        format!("recipes = [\"{}\", \"{}\"]\n", f.repo.display(), site.display()),
    )
    .unwrap();

    let tf1 = Wheel::new("tensorflow-gpu", "1.15.5", "cp37-cp37m-manylinux2010_x86_64")
        .file("tensorflow/__init__.py", TF1);
    f.publish_wheel(&tf1, &tf1.build(), "python = \"3.7\"\ncudatoolkit = \"10.0\"\ncudnn = \"7.6\"");
    let cudart12 = shared_object("libcudart.so.12", "cudaRuntimeGetVersion", 12020, false);
    let runtime = Wheel::new("nvidia-cuda-runtime-cu12", "12.2.140", "py3-none-manylinux1_x86_64")
        .file("nvidia/__init__.py", "")
        .file("nvidia/cuda_runtime/__init__.py", "")
        .file("nvidia/cuda_runtime/lib/libcudart.so.12", cudart12.clone());
    f.publish_wheel(&runtime, &runtime.build(), "python = \">=3\"");
    let tf2 = Wheel::new("tensorflow", "2.15.1", "cp311-cp311-manylinux_2_17_x86_64")
        .file("tensorflow/__init__.py", TF2)
        .file("tensorflow/python/_pywrap.so", extension_module(&cudart12));
    f.publish_wheel(&tf2, &tf2.build(), "python = \"3.11\"\nnvidia-cuda-runtime-cu12 = \"==12.2.140\"");

    let vision = f.profile("vision", "[packages]\ntensorflow-gpu = \"1.15\"\n");
    let nlp = f.profile("nlp", "[packages]\ntensorflow = \"2.15\"\n");
    let machine = [("ENVCTL_SYSTEM_DRIVER", "535.104.05"), ("ENVCTL_SYSTEM_GLIBC", "2.35")];
    f.sb.run_env(&["apply", &vision], &machine).success();
    f.sb.run_env(&["apply", &nlp], &machine).success();

    let versions = "import tensorflow, sys; print(sys.version_info[:2], tensorflow.versions())";
    let out = f.run(&["run", "vision", "--", "python3", "-c", versions]).success();
    assert_eq!(out.stdout.trim(), "(3, 7) (10000, 7605)", "{}", out.stderr);
    let out = f.run(&["run", "nlp", "--", "python3", "-c", versions]).success();
    assert_eq!(out.stdout.trim(), "(3, 11) (12020,)", "{}", out.stderr);

    // Neither session reaches the other's runtime.
    let load = |soname: &str| {
        format!(
            "import ctypes\ntry:\n ctypes.CDLL('{soname}'); print('loaded')\nexcept OSError: print('absent')"
        )
    };
    let out = f.run(&["run", "nlp", "--", "python3", "-c", &load("libcudart.so.10.0")]).success();
    assert_eq!(out.stdout.trim(), "absent");
    let out = f.run(&["run", "vision", "--", "python3", "-c", &load("libcudart.so.12")]).success();
    assert_eq!(out.stdout.trim(), "absent");
}
