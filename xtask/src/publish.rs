//! `cargo xtask publish-check`: the library crates as another project would get them.
//!
//! 1. `cargo package` with verification for every library crate: each is built alone from
//!    the files it would publish (no `../` path, no workspace file), against the others as
//!    packaged.
//! 2. A scratch project in a temporary folder outside the workspace (so no `.cargo/config.toml`
//!    of ours applies) depends on the packaged umcl-data and umcl-losses, copies their
//!    `examples/`, finds libtorch through `LIBTORCH` as tch documents, and builds and runs
//!    every example.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, status};

/// The crates other projects can depend on, in dependency order.
const LIBRARIES: [&str; 7] = [
    "umcl-build",
    "umcl-fs",
    "umcl-data",
    "umcl-losses",
    "umcl-models",
    "umcl-torch-ext",
    "umcl-train",
];

/// The crates whose examples the scratch project runs.
const EXAMPLE_CRATES: [&str; 2] = ["umcl-data", "umcl-losses"];

pub(crate) fn run(root: &Path) -> Result<()> {
    crate::setup::ensure(root, false)?;
    let libtorch = fs::canonicalize(root.join(".libtorch"))
        .context("no .libtorch folder after `cargo xtask setup`")?;
    let started = std::time::Instant::now();
    let version = workspace_version(root)?;

    forget_stale_sources(&version)?;
    let target = root.join("target/publish-check");
    forget_stale_builds(&target)?;
    let mut package = cargo(root);
    package.env("CARGO_TARGET_DIR", &target);
    // --allow-dirty: the check also runs on a working tree before its commit.
    package.args(["package", "--allow-dirty"]);
    for name in LIBRARIES {
        package.args(["--package", name]);
    }
    status(&mut package)?;

    let scratch = std::env::temp_dir().join(format!("umcl-outside-{}", std::process::id()));
    let result = scratch_project(root, &scratch, &libtorch, &version, &target);
    let _ = fs::remove_dir_all(&scratch);
    result?;
    eprintln!(
        "xtask: publish-check: {} packaged and verified, {} examples built and run outside the \
         workspace, in {:.0} s",
        LIBRARIES.join(", "),
        EXAMPLE_CRATES.join(" and "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Cargo unpacks the crates it verifies against (from its temporary local registry) under
/// `$CARGO_HOME/registry/src/<registry>/NAME-VERSION` and reuses such a folder on the next
/// run even when the crate changed, so a second check would build against the first one's
/// sources. Removes those folders for our crates, outside crates.io's registry.
fn forget_stale_sources(version: &str) -> Result<()> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let src = home.join("registry/src");
    let Ok(registries) = fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        if registry
            .file_name()
            .to_string_lossy()
            .starts_with("index.crates.io")
        {
            continue;
        }
        for name in LIBRARIES {
            let stale = registry.path().join(format!("{name}-{version}"));
            if stale.exists() {
                fs::remove_dir_all(&stale)
                    .with_context(|| format!("removing {}", stale.display()))?;
            }
        }
    }
    Ok(())
}

/// Cargo takes a registry crate's sources as immutable, so after a change it would reuse the
/// build of the previous check's umcl crates (same name, version and registry). Removes the
/// build outputs of our crates from the check's own target folder; the rest (tch, ...) stays.
fn forget_stale_builds(target: &Path) -> Result<()> {
    for sub in [
        "debug/.fingerprint",
        "debug/deps",
        "debug/build",
        "debug/examples",
    ] {
        let dir = target.join(sub);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("umcl") || name.starts_with("libumcl") {
                let path = entry.path();
                let removed = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                removed.with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn workspace_version(root: &Path) -> Result<String> {
    let path = root.join("Cargo.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    doc.get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{}: no [workspace.package] version", path.display()))
}

/// Writes, builds and runs the scratch project.
fn scratch_project(
    root: &Path,
    dir: &Path,
    libtorch: &Path,
    version: &str,
    target: &Path,
) -> Result<()> {
    // `cargo package` unpacks what it verified under its target folder's `package/`.
    let packaged = |name: &str| target.join(format!("package/{name}-{version}"));
    let mut manifest = String::from(
        "[package]\nname = \"umcl-outside-check\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[workspace]\n\n[dependencies]\n",
    );
    // tch as the crate's own manifest pins it, so the example's tensors are umcl-losses' type.
    manifest.push_str("tch = \"=0.24.0\"\n");
    for name in EXAMPLE_CRATES {
        manifest.push_str(&format!("{name} = \"{version}\"\n"));
    }
    // The unpublished crates come from the folders `cargo package` verified.
    manifest.push_str("\n[patch.crates-io]\n");
    for name in LIBRARIES {
        let path = packaged(name);
        if !path.join("Cargo.toml").is_file() {
            bail!(
                "{} is missing: cargo package did not verify {name}",
                path.display()
            );
        }
        manifest.push_str(&format!(
            "{name} = {{ path = {:?} }}\n",
            path.display().to_string()
        ));
    }
    fs::create_dir_all(dir.join("src"))
        .and_then(|()| fs::create_dir_all(dir.join("examples")))
        .with_context(|| format!("creating {}", dir.display()))?;
    write(&dir.join("Cargo.toml"), &manifest)?;
    write(&dir.join("src/lib.rs"), "//! Holds the copied examples.\n")?;
    let mut examples = Vec::new();
    for name in EXAMPLE_CRATES {
        let from = root.join("crates").join(name).join("examples");
        let entries = fs::read_dir(&from).with_context(|| format!("reading {}", from.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", from.display()))?
                .path();
            if path.extension().is_some_and(|e| e == "rs") {
                let file = path.file_name().context("an example has a name")?;
                fs::copy(&path, dir.join("examples").join(file))
                    .with_context(|| format!("copying {}", path.display()))?;
                examples.push(
                    path.file_stem()
                        .context("an example has a stem")?
                        .to_owned(),
                );
            }
        }
    }
    if examples.is_empty() {
        bail!("no examples in {}", EXAMPLE_CRATES.join(", "));
    }
    // As a user outside the workspace: LIBTORCH for the build, LD_LIBRARY_PATH to run (a run
    // path set by a dependency's build script does not reach the dependent's binaries). It
    // must name torch's real lib folder, from which libtorch_cpu finds the CUDA runtime.
    let cpu = libtorch.join("lib/libtorch_cpu.so");
    let lib = fs::canonicalize(&cpu)
        .with_context(|| format!("resolving {}", cpu.display()))?
        .parent()
        .context("libtorch_cpu.so lies in a folder")?
        .to_path_buf();
    for example in &examples {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(dir)
            .args(["run", "--quiet", "--example"])
            .arg(example)
            .env("LIBTORCH", libtorch)
            .env("LD_LIBRARY_PATH", &lib)
            .env("CARGO_TARGET_DIR", target);
        status(&mut cmd).with_context(|| {
            format!(
                "the example {} outside the workspace",
                example.to_string_lossy()
            )
        })?;
    }
    Ok(())
}

fn write(path: &PathBuf, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
