//! The rules of `after`, `requires` and `wants`: each names a command of the same
//! workspace (`name`) or of another (`workspace/name`); a name of the same workspace must
//! be another command of it; and the `after` edges within a workspace must not form a
//! cycle, since no command on one could ever start.
//!
//! A reference to another workspace is only checked for its syntax: that workspace may be
//! created later, and the runtime waits for it (docs/CARDS.md).

use std::collections::HashMap;

use super::validate::{name_message, SpecError};
use crate::spec::{valid_name, CommandSpec, DepRef, WorkspaceSpec};

/// The three dependency lists of `c`, with their card field names.
fn lists(c: &CommandSpec) -> [(&'static str, &[DepRef]); 3] {
    [
        ("after", &c.after),
        ("requires", &c.requires),
        ("wants", &c.wants),
    ]
}

/// The syntax of each reference of one command. A card's references were parsed by
/// [`DepRef::parse`] already; a spec from the socket was not.
pub(super) fn check_refs(c: &CommandSpec) -> Result<(), (String, String)> {
    for (field, refs) in lists(c) {
        for (i, dep) in refs.iter().enumerate() {
            let bad = [Some(dep.name.as_str()), dep.workspace.as_deref()]
                .into_iter()
                .flatten()
                .find(|part| !valid_name(part));
            if let Some(part) = bad {
                return Err((format!("{field}[{i}]"), name_message(part)));
            }
        }
    }
    Ok(())
}

/// The references of every command resolved against the workspace: names of the same
/// workspace exist and are not the command itself, and `after` has no cycle.
pub(super) fn check_graph(spec: &WorkspaceSpec) -> Result<(), SpecError> {
    let index: HashMap<&str, usize> = spec
        .commands
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    // Each command's `after` edges to commands of this workspace, for the cycle search.
    let mut after: Vec<Vec<usize>> = Vec::with_capacity(spec.commands.len());
    for (i, c) in spec.commands.iter().enumerate() {
        let mut edges = Vec::new();
        for (field, refs) in lists(c) {
            for (j, dep) in refs.iter().enumerate() {
                let Some(name) = local_name(spec, dep) else {
                    continue;
                };
                let error = |message: String| SpecError {
                    command: Some(i),
                    field: format!("{field}[{j}]"),
                    message,
                };
                if name == c.name {
                    return Err(error(format!(
                        "{:?} is this command itself: a command cannot depend on itself",
                        dep.to_string()
                    )));
                }
                let Some(&target) = index.get(name) else {
                    return Err(error(format!(
                        "no command {name:?} in this workspace (a command of another workspace is written \"workspace/name\")"
                    )));
                };
                if field == "after" {
                    edges.push(target);
                }
            }
        }
        after.push(edges);
    }
    match find_cycle(&after) {
        None => Ok(()),
        Some(cycle) => Err(cycle_error(spec, cycle)),
    }
}

/// The command name `dep` refers to when it is in `spec`'s own workspace: written without
/// a workspace, or with this workspace's own name.
fn local_name<'a>(spec: &WorkspaceSpec, dep: &'a DepRef) -> Option<&'a str> {
    match &dep.workspace {
        Some(ws) if *ws != spec.name => None,
        _ => Some(dep.name.as_str()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Unseen,
    /// On the current search path: an edge back to it closes a cycle.
    OnPath,
    Done,
}

/// One cycle of the graph, as the nodes on it in edge order, if there is any. Iterative
/// depth-first search, so a 256-command chain cannot overflow the stack.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut mark = vec![Mark::Unseen; edges.len()];
    // The search path: each node with the index of the next edge to follow from it.
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..edges.len() {
        if mark[root] != Mark::Unseen {
            continue;
        }
        mark[root] = Mark::OnPath;
        path.push((root, 0));
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            let Some(&to) = edges[node].get(*next) else {
                mark[node] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            match mark[to] {
                Mark::Unseen => {
                    mark[to] = Mark::OnPath;
                    path.push((to, 0));
                }
                Mark::OnPath => {
                    let start = path.iter().position(|(n, _)| *n == to).unwrap_or(0);
                    return Some(path[start..].iter().map(|(n, _)| *n).collect());
                }
                Mark::Done => {}
            }
        }
    }
    None
}

/// The error of a cycle: it names every command on it ("a -> b -> a", starting from the
/// one declared first) and is placed at that command's `after`.
fn cycle_error(spec: &WorkspaceSpec, mut cycle: Vec<usize>) -> SpecError {
    let first = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, node)| **node)
        .map_or(0, |(at, _)| at);
    cycle.rotate_left(first);
    let mut names: Vec<&str> = cycle
        .iter()
        .map(|&i| spec.commands[i].name.as_str())
        .collect();
    names.push(names[0]);
    SpecError {
        command: Some(cycle[0]),
        field: "after".into(),
        message: format!(
            "dependency cycle {}: no command on it could ever start",
            names.join(" -> ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_find_cycle_chain_has_none() {
        // Arrange: 0 after 1 after 2.
        let edges = vec![vec![1], vec![2], vec![]];

        // Act
        let cycle = find_cycle(&edges);

        // Assert
        assert_eq!(cycle, None);
    }

    #[test]
    fn test_find_cycle_diamond_has_none() {
        // Arrange: 0 after 1 and 2, both after 3: 3 is reached twice, not a cycle.
        let edges = vec![vec![1, 2], vec![3], vec![3], vec![]];

        // Act
        let cycle = find_cycle(&edges);

        // Assert
        assert_eq!(cycle, None);
    }

    #[test]
    fn test_find_cycle_loop_behind_a_tail_returns_only_the_loop() {
        // Arrange: 0 -> 1 -> 2 -> 3 -> 1.
        let edges = vec![vec![1], vec![2], vec![3], vec![1]];

        // Act
        let cycle = find_cycle(&edges);

        // Assert
        assert_eq!(cycle, Some(vec![1, 2, 3]));
    }

    #[test]
    fn test_find_cycle_long_chain_does_not_recurse() {
        // Arrange: a chain of 100,000 ending in a loop to its start.
        let n = 100_000;
        let mut edges: Vec<Vec<usize>> = (1..=n).map(|i| vec![i % n]).collect();
        edges[n - 1] = vec![0];

        // Act
        let cycle = find_cycle(&edges);

        // Assert
        assert_eq!(cycle.map(|c| c.len()), Some(n));
    }
}
