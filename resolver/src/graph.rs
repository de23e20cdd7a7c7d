//! The solution as a dependency DAG (petgraph): install order, closures, `why`, DOT export.
//! Recipes may form cycles; install order then treats each cycle as one unit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use envctl_recipes::{PackageName, Recipe};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

/// Edges point from a package to what it depends on.
#[derive(Debug, Clone)]
pub struct DepGraph {
    graph: DiGraph<PackageName, ()>,
    index: BTreeMap<PackageName, NodeIndex>,
    roots: Vec<PackageName>,
}

impl DepGraph {
    /// Builds the graph of chosen recipes; `roots` are the requested packages.
    pub fn new(packages: &BTreeMap<PackageName, Arc<Recipe>>, roots: &[PackageName]) -> DepGraph {
        let edges = packages.iter().map(|(n, r)| (n.clone(), r.dependencies.keys().cloned().collect()));
        DepGraph::from_edges(edges, roots)
    }

    /// Builds the graph of packages and what each depends on (a generation's record of them);
    /// dependencies that are not among the packages are left out.
    pub fn from_edges(
        packages: impl IntoIterator<Item = (PackageName, Vec<PackageName>)>,
        roots: &[PackageName],
    ) -> DepGraph {
        let packages: BTreeMap<PackageName, Vec<PackageName>> = packages.into_iter().collect();
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        for name in packages.keys() {
            index.insert(name.clone(), graph.add_node(name.clone()));
        }
        for (name, deps) in &packages {
            for dep in deps {
                if let (Some(&a), Some(&b)) = (index.get(name), index.get(dep)) {
                    graph.add_edge(a, b, ());
                }
            }
        }
        let mut roots = roots.to_vec();
        roots.sort();
        DepGraph { graph, index, roots }
    }

    /// Packages in an order where every package comes after its dependencies.
    pub fn install_order(&self) -> Vec<PackageName> {
        // Tarjan emits a component only after every component it reaches: dependencies first.
        petgraph::algo::tarjan_scc(&self.graph)
            .into_iter()
            .flat_map(|mut scc| {
                scc.sort_by(|a, b| self.graph[*a].cmp(&self.graph[*b]));
                scc
            })
            .map(|i| self.graph[i].clone())
            .collect()
    }

    /// The direct dependencies of a package.
    pub fn dependencies(&self, name: &PackageName) -> Vec<PackageName> {
        let Some(&i) = self.index.get(name) else { return Vec::new() };
        let mut out: Vec<PackageName> = self.graph.edges(i).map(|e| self.graph[e.target()].clone()).collect();
        out.sort();
        out
    }

    /// A package and everything it needs.
    pub fn closure(&self, name: &PackageName) -> BTreeSet<PackageName> {
        let mut seen = BTreeSet::new();
        let Some(&start) = self.index.get(name) else { return seen };
        let mut dfs = petgraph::visit::Dfs::new(&self.graph, start);
        while let Some(i) = dfs.next(&self.graph) {
            seen.insert(self.graph[i].clone());
        }
        seen
    }

    /// The shortest chain from a requested package to `target` (both included).
    pub fn why(&self, target: &PackageName) -> Option<Vec<PackageName>> {
        let &goal = self.index.get(target)?;
        let mut prev: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
        let mut queue = VecDeque::new();
        for r in &self.roots {
            if let Some(&i) = self.index.get(r)
                && let std::collections::btree_map::Entry::Vacant(e) = prev.entry(i)
            {
                e.insert(i);
                queue.push_back(i);
            }
        }
        while let Some(i) = queue.pop_front() {
            if i == goal {
                let mut chain = vec![self.graph[i].clone()];
                let mut cur = i;
                while prev[&cur] != cur {
                    cur = prev[&cur];
                    chain.push(self.graph[cur].clone());
                }
                chain.reverse();
                return Some(chain);
            }
            let mut next: Vec<NodeIndex> = self.graph.neighbors(i).collect();
            next.sort_by(|a, b| self.graph[*a].cmp(&self.graph[*b]));
            for n in next {
                if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(n) {
                    e.insert(i);
                    queue.push_back(n);
                }
            }
        }
        None
    }

    /// Requested packages.
    pub fn roots(&self) -> &[PackageName] {
        &self.roots
    }

    /// Graphviz DOT, with versions as labels; deterministic.
    pub fn to_dot(&self, version: impl Fn(&PackageName) -> String) -> String {
        let mut out = String::from("digraph profile {\n  rankdir=LR;\n  node [shape=box];\n");
        for name in self.index.keys() {
            let style = if self.roots.contains(name) { ", style=bold" } else { "" };
            out.push_str(&format!("  \"{name}\" [label=\"{name}\\n{}\"{style}];\n", version(name)));
        }
        for name in self.index.keys() {
            for dep in self.dependencies(name) {
                out.push_str(&format!("  \"{name}\" -> \"{dep}\";\n"));
            }
        }
        out.push_str("}\n");
        out
    }
}
