//! envctl's solver: turns a request, recipes and the machine's facts into an exact, explained
//! set of recipes. Pure computation: no network, no disk, no store. System facts arrive as data.

#![deny(missing_docs)]

mod graph;
mod set;
mod solve;

pub use graph::DepGraph;
pub use set::Set;
pub use solve::{Fact, Pkg, Request, Solution, SolveError, Task, solve};
