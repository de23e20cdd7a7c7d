//! Which bundled framework stacks a GPU can run: each stack of `examples/frameworks/` resolved
//! against this machine's facts with that GPU's compute capability, so that "will TensorFlow and
//! PyTorch run on this hardware?" has a one-command answer (`envctl doctor`, `envctl gpus --fits`).
//! A stack fits when it resolves: the driver runs its CUDA, the GPU is one its CUDA code was built
//! for (where its recipes say: `[system] sm`), glibc and the architecture are right.

use envctl_recipes::{ProfileFile, Repository, SystemFacts, Version};

/// The bundled stacks, as the example profiles spell them.
pub const STACKS: &[(&str, &str)] = &[
    ("tensorflow-2.15", include_str!("../../../examples/frameworks/tensorflow-2.15.toml")),
    ("tensorflow-2.21", include_str!("../../../examples/frameworks/tensorflow-2.21.toml")),
    ("tensorflow-1.15-gpu", include_str!("../../../examples/frameworks/tensorflow-1.15-gpu.toml")),
    ("torch-2.3", include_str!("../../../examples/frameworks/torch-2.3.toml")),
    ("torch-2.8", include_str!("../../../examples/frameworks/torch-2.8.toml")),
];

/// Whether one stack runs, and if not, the first reason.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fit {
    /// The stack (`torch-2.8`).
    pub stack: String,
    /// None: it runs. Else why not, in the resolver's words.
    pub why_not: Option<String>,
    /// Whether the compute capability was checked: some recipe of the stack says which GPUs its
    /// CUDA code runs on (`[system] sm`). A stack whose recipes do not say runs as far as the
    /// driver and the rest go; on an old GPU it may still lack machine code.
    pub compute_checked: bool,
}

/// Each bundled stack against `facts` with the GPU of compute capability `cc` (all of `facts`'s
/// GPUs when `None`).
pub fn fits(repo: &Repository, facts: &SystemFacts, cc: Option<(i32, i32)>) -> Vec<Fit> {
    let mut facts = facts.clone();
    if let Some((major, minor)) = cc
        && let Ok(v) = Version::parse(&format!("{major}.{minor}"))
    {
        facts.sm = vec![v];
    }
    STACKS
        .iter()
        .map(|(stack, text)| {
            let path = std::path::Path::new("examples/frameworks").join(format!("{stack}.toml"));
            let (why_not, compute_checked) = match ProfileFile::parse(text, &path) {
                Err(e) => (Some(e.to_string()), false),
                Ok(profile) => {
                    let context =
                        crate::resolution::Context::from_parts(profile, facts.clone(), repo.clone());
                    match context.solve(Default::default()) {
                        Ok(solution) => (None, solution.packages.values().any(|r| r.system.sm.is_some())),
                        Err(f) => {
                            // The cause's first line says it; the rest is the resolver's derivation.
                            let (context, causes, _) = f.parts();
                            let why = causes.lines().next().map_or(context, |l| l.trim().to_owned());
                            let checked = why.contains("compute capability");
                            (Some(why), checked)
                        }
                    }
                }
            };
            Fit { stack: (*stack).to_owned(), why_not, compute_checked }
        })
        .collect()
}
