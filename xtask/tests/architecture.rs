//! The architecture invariants of docs/architecture.md, checked on the workspace's resolved
//! dependency graph (`cargo metadata --format-version 1`, its `resolve` section):
//!
//! - umcl-data (and umcl-py, when the workspace has it) reaches neither `tch` nor `torch-sys`:
//!   the data tools build and run without libtorch;
//! - xtask reaches no workspace member: it must build before libtorch exists;
//! - umcl-models and umcl-losses do not reach each other;
//! - umcl-torch-ext reaches no other workspace member (the build-script helper umcl-build
//!   aside): it is the leaf bridge to libtorch;
//! - umcl-fs (atomic writes) reaches no other workspace member: every crate may use it.
//!
//! "Reaches" follows normal and build dependencies, transitively; dev-dependencies (tests,
//! benches, examples) do not count. A violation is reported with the chain of packages that
//! leads to it, e.g. `umcl-data -> foo -> tch`.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// The part of `cargo metadata --format-version 1` the rules read.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    resolve: Option<Resolve>,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
struct Node {
    id: String,
    #[serde(default)]
    deps: Vec<NodeDep>,
}

#[derive(Debug, Deserialize)]
struct NodeDep {
    pkg: String,
    /// Empty only from cargo older than 1.41, which did not say; then the edge counts.
    #[serde(default)]
    dep_kinds: Vec<DepKind>,
}

#[derive(Debug, Deserialize)]
struct DepKind {
    /// `null` for a normal dependency, `"dev"` or `"build"`.
    kind: Option<String>,
}

impl NodeDep {
    /// Whether the edge is a normal or build dependency (for some target), not only a
    /// dev-dependency.
    fn counts(&self) -> bool {
        self.dep_kinds.is_empty()
            || self
                .dep_kinds
                .iter()
                .any(|k| k.kind.as_deref() != Some("dev"))
    }
}

/// What a package must not reach.
enum Forbidden {
    /// These packages (by name).
    Packages(&'static [&'static str]),
    /// Any workspace member but itself and those listed.
    WorkspaceMembers { except: &'static [&'static str] },
}

struct Rule {
    package: &'static str,
    /// False for a package the workspace may not have (yet).
    required: bool,
    forbidden: Forbidden,
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        package: "umcl-data",
        required: true,
        forbidden: Forbidden::Packages(&["tch", "torch-sys"]),
        why: "umcl-data must build and run without libtorch",
    },
    Rule {
        package: "umcl-py",
        required: false,
        forbidden: Forbidden::Packages(&["tch", "torch-sys"]),
        why: "umcl-py must build and run without libtorch",
    },
    Rule {
        package: "xtask",
        required: true,
        forbidden: Forbidden::WorkspaceMembers { except: &[] },
        why: "xtask must build before libtorch exists",
    },
    Rule {
        package: "umcl-models",
        required: true,
        forbidden: Forbidden::Packages(&["umcl-losses"]),
        why: "the encoders and the losses are independent of each other",
    },
    Rule {
        package: "umcl-losses",
        required: true,
        forbidden: Forbidden::Packages(&["umcl-models"]),
        why: "the encoders and the losses are independent of each other",
    },
    Rule {
        package: "umcl-torch-ext",
        required: true,
        // umcl-build only helps build scripts find libtorch; what it depends on is still
        // checked, as the search goes on through it.
        forbidden: Forbidden::WorkspaceMembers {
            except: &["umcl-build"],
        },
        why: "umcl-torch-ext, the bridge to libtorch, depends on none of our crates",
    },
    Rule {
        package: "umcl-fs",
        required: true,
        forbidden: Forbidden::WorkspaceMembers { except: &[] },
        why: "umcl-fs is the bottom layer, which every crate may use",
    },
];

/// Every violation of [`RULES`] in `metadata`, one line each (empty: none).
fn violations(metadata: &Metadata) -> Result<Vec<String>, String> {
    let resolve = metadata
        .resolve
        .as_ref()
        .ok_or("cargo metadata has no `resolve` graph (was it run with --no-deps?)")?;
    let names: HashMap<&str, &str> = metadata
        .packages
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    let name_of = |id: &str| -> Result<&str, String> {
        names
            .get(id)
            .copied()
            .ok_or_else(|| format!("cargo metadata: no package has the id `{id}`"))
    };
    let edges: HashMap<&str, &[NodeDep]> = resolve
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.deps.as_slice()))
        .collect();
    let members = metadata
        .workspace_members
        .iter()
        .map(|id| Ok((name_of(id)?, id.as_str())))
        .collect::<Result<Vec<(&str, &str)>, String>>()?;

    let mut found = Vec::new();
    for rule in RULES {
        let Some(&(_, start)) = members.iter().find(|(name, _)| *name == rule.package) else {
            if rule.required {
                return Err(format!(
                    "the workspace has no member `{}`; update the rules in {} if it was renamed",
                    rule.package,
                    file!()
                ));
            }
            continue;
        };
        let forbidden = |name: &str| match &rule.forbidden {
            Forbidden::Packages(list) => list.contains(&name),
            Forbidden::WorkspaceMembers { except } => {
                name != rule.package
                    && !except.contains(&name)
                    && members.iter().any(|(member, _)| *member == name)
            }
        };
        // Breadth first, so each offending package is reported with a shortest chain.
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        parent.insert(start, start);
        while let Some(id) = queue.pop_front() {
            for dep in edges.get(id).copied().unwrap_or_default() {
                if !dep.counts() || parent.contains_key(dep.pkg.as_str()) {
                    continue;
                }
                parent.insert(&dep.pkg, id);
                if forbidden(name_of(&dep.pkg)?) {
                    let mut chain = vec![name_of(&dep.pkg)?];
                    let mut at = id;
                    while at != start {
                        chain.push(name_of(at)?);
                        at = parent[at];
                    }
                    chain.push(rule.package);
                    chain.reverse();
                    found.push(format!("{}: {}", chain.join(" -> "), rule.why));
                }
                queue.push_back(&dep.pkg);
            }
        }
    }
    Ok(found)
}

/// The rules checked on parsed metadata: Ok, or one message naming every violation.
fn check(metadata: &Metadata) -> Result<(), String> {
    let found = violations(metadata)?;
    if found.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the dependency graph breaks the architecture invariants of docs/architecture.md:\n  {}",
        found.join("\n  ")
    ))
}

#[test]
fn workspace_follows_the_architecture_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("could not start {cargo:?} metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Metadata = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cargo metadata printed JSON we cannot read: {e}"));
    if let Err(message) = check(&metadata) {
        panic!("{message}");
    }
}

// The rule checking on small hand-made graphs, so that the test above is known to fail when
// a rule is broken.

/// A dependency of a synthetic package: its name and kind (`None`: normal, `Some("dev")`,
/// `Some("build")`).
type Dep = (&'static str, Option<&'static str>);
/// A synthetic package: name, workspace member or not, dependencies.
type Pkg = (&'static str, bool, &'static [Dep]);

/// The metadata cargo would print for `packages`.
fn synthetic(packages: &[Pkg]) -> Metadata {
    let id = |name: &str| {
        let member = packages.iter().any(|(n, m, _)| *n == name && *m);
        if member {
            format!("path+file:///ws/{name}#{name}@0.1.0")
        } else {
            format!("registry+https://github.com/rust-lang/crates.io-index#{name}@1.0.0")
        }
    };
    let json = serde_json::json!({
        "packages": packages.iter().map(|(n, _, _)| serde_json::json!({"id": id(n), "name": n})).collect::<Vec<_>>(),
        "workspace_members": packages.iter().filter(|(_, m, _)| *m).map(|(n, _, _)| id(n)).collect::<Vec<_>>(),
        "resolve": {
            "root": null,
            "nodes": packages.iter().map(|(n, _, deps)| serde_json::json!({
                "id": id(n),
                "dependencies": deps.iter().map(|(d, _)| id(d)).collect::<Vec<_>>(),
                "deps": deps.iter().map(|(d, kind)| serde_json::json!({
                    "name": d.replace('-', "_"),
                    "pkg": id(d),
                    "dep_kinds": [{"kind": kind, "target": null}],
                })).collect::<Vec<_>>(),
                "features": [],
            })).collect::<Vec<_>>(),
        },
        "target_directory": "/ws/target",
        "version": 1,
        "workspace_root": "/ws",
    });
    serde_json::from_value(json).expect("the synthetic metadata parses")
}

/// A graph that keeps every rule: the workspace as it is meant to be.
const GOOD: &[Pkg] = &[
    ("umcl-fs", true, &[]),
    (
        "umcl-data",
        true,
        &[("serde", None), ("cc", Some("build")), ("umcl-fs", None)],
    ),
    (
        "umcl-models",
        true,
        &[
            ("tch", None),
            ("umcl-fs", None),
            ("umcl-torch-ext", None),
            ("umcl-build", Some("build")),
            ("umcl-data", Some("dev")),
        ],
    ),
    (
        "umcl-losses",
        true,
        &[("tch", None), ("umcl-models", Some("dev"))],
    ),
    (
        "umcl-torch-ext",
        true,
        &[("tch", None), ("umcl-build", Some("build"))],
    ),
    (
        "umcl-train",
        true,
        &[
            ("umcl-data", None),
            ("umcl-models", None),
            ("umcl-losses", None),
            ("umcl-torch-ext", None),
        ],
    ),
    ("umcl-build", true, &[]),
    ("xtask", true, &[("serde", None)]),
    ("tch", false, &[("torch-sys", None)]),
    ("torch-sys", false, &[("cc", Some("build"))]),
    ("serde", false, &[]),
    ("cc", false, &[]),
];

/// [`GOOD`] with `package`'s dependencies replaced, plus `extra` packages.
fn with(package: &str, deps: &'static [Dep], extra: &[Pkg]) -> Metadata {
    let mut packages: Vec<Pkg> = GOOD
        .iter()
        .map(|&(n, m, d)| {
            if n == package {
                (n, m, deps)
            } else {
                (n, m, d)
            }
        })
        .collect();
    packages.extend_from_slice(extra);
    synthetic(&packages)
}

fn errors(metadata: &Metadata) -> String {
    match check(metadata) {
        Ok(()) => panic!("the check passed a graph that breaks a rule"),
        Err(e) => e,
    }
}

#[test]
fn the_intended_graph_passes() {
    // Dev-dependencies (umcl-models -> umcl-data, umcl-losses -> umcl-models) do not count.
    assert_eq!(check(&synthetic(GOOD)), Ok(()));
}

#[test]
fn a_transitive_path_to_tch_is_named() {
    let m = with(
        "umcl-data",
        &[("serde", None), ("foo", None)],
        &[("foo", false, &[("tch", None)])],
    );
    let e = errors(&m);
    assert!(
        e.contains("umcl-data -> foo -> tch: umcl-data must build"),
        "{e}"
    );
    // Through tch it also reaches torch-sys: both are reported, each with its chain.
    assert!(e.contains("umcl-data -> foo -> tch -> torch-sys"), "{e}");
}

#[test]
fn build_dependencies_count_and_dev_dependencies_do_not() {
    let build = with("umcl-data", &[("torch-sys", Some("build"))], &[]);
    assert!(errors(&build).contains("umcl-data -> torch-sys"));
    let dev = with("umcl-data", &[("tch", Some("dev"))], &[]);
    assert_eq!(check(&dev), Ok(()));
}

#[test]
fn xtask_reaches_no_workspace_member() {
    let m = with(
        "xtask",
        &[("helper", None)],
        &[("helper", false, &[("umcl-data", None)])],
    );
    let e = errors(&m);
    assert!(
        e.contains("xtask -> helper -> umcl-data: xtask must build"),
        "{e}"
    );
    let build = with("xtask", &[("umcl-build", Some("build"))], &[]);
    assert!(errors(&build).contains("xtask -> umcl-build"));
}

#[test]
fn models_and_losses_do_not_reach_each_other() {
    let m = with("umcl-models", &[("tch", None), ("umcl-losses", None)], &[]);
    assert!(errors(&m).contains("umcl-models -> umcl-losses: the encoders"));
    let l = with("umcl-losses", &[("tch", None), ("umcl-train", None)], &[]);
    // umcl-losses -> umcl-train -> umcl-models, and also a cycle back to itself that the
    // search does not follow twice.
    assert!(errors(&l).contains("umcl-losses -> umcl-train -> umcl-models"));
}

#[test]
fn torch_ext_reaches_no_other_workspace_member() {
    let m = with(
        "umcl-torch-ext",
        &[
            ("tch", None),
            ("umcl-build", Some("build")),
            ("umcl-data", None),
        ],
        &[],
    );
    let e = errors(&m);
    assert!(
        e.contains("umcl-torch-ext -> umcl-data: umcl-torch-ext"),
        "{e}"
    );
    assert!(!e.contains("-> umcl-build"), "umcl-build is allowed: {e}");
}

#[test]
fn umcl_fs_reaches_no_other_workspace_member() {
    let m = with("umcl-fs", &[("umcl-data", None)], &[]);
    let e = errors(&m);
    assert!(
        e.contains("umcl-fs -> umcl-data: umcl-fs is the bottom layer"),
        "{e}"
    );
}

#[test]
fn the_rules_need_their_packages() {
    let packages: Vec<_> = GOOD
        .iter()
        .copied()
        .filter(|(n, _, _)| *n != "umcl-losses")
        .collect();
    let e = check(&synthetic(&packages)).unwrap_err();
    assert!(e.contains("no member `umcl-losses`"), "{e}");
    // umcl-py is checked only when it exists, and then like umcl-data.
    let py = with("serde", &[], &[("umcl-py", true, &[("tch", None)])]);
    assert!(errors(&py).contains("umcl-py -> tch"));
}
