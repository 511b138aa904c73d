//! Weight import from safetensors files and PyTorch checkpoints written by torchvision, timm
//! and Hugging Face.
//!
//! tch's own `VarStore::load` is not used: it casts the whole store to the file's dtype and
//! cannot rename keys. Import here goes in four steps:
//!
//! 1. read every tensor of the file ([`read_weights`]: safetensors, or a `.pth`/`.pt`/`.bin`
//!    checkpoint through [`crate::pth`], told apart by their first bytes);
//! 2. map each file key to a variable name of the model with a [`KeyMap`] (strip `module.`,
//!    rename legacy `gamma`/`beta`, or [`KeyAction::Ignore`] a key on purpose, such as a
//!    classifier head the encoder does not have);
//! 3. compare with the model's variables (those under a scope, such as `image.` for the image
//!    encoder of a dual encoder, in [`import_weights`]): every variable must get a tensor (else
//!    *missing*),
//!    every mapped key must name a variable (else *unexpected*), shapes must agree (else
//!    *mismatched*), two file keys may not land on the same variable;
//! 4. copy under `no_grad` with `copy_`, which converts the file's dtype to the variable's: the
//!    model keeps its own dtype (an fp16 file loads into an fp32 model as fp32, and the report
//!    lists the conversions in [`ImportReport::converted`]).
//!
//! Missing, unexpected and mismatched keys are an error ([`ModelError::Import`]) unless the
//! caller allows partial loading; then only what matches is copied and the rest is reported.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use tch::{nn::VarStore, Kind, Tensor};

use crate::error::ModelError;

/// What to do with one key of a weight file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Load it into the model variable of this name.
    Load(String),
    /// Skip it on purpose (reported in [`ImportReport::ignored`], never an error).
    Ignore,
}

/// Tensors with their names, as a safetensors file holds them.
pub type NamedTensors = Vec<(String, Tensor)>;

/// Maps a key of a weight file to what the import does with it.
pub type KeyMap<'a> = &'a dyn Fn(&str) -> KeyAction;

/// The identity map: every key is a variable name.
pub fn identity_keys(key: &str) -> KeyAction {
    KeyAction::Load(key.to_string())
}

/// A file tensor whose shape differs from the model variable it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The model variable.
    pub name: String,
    /// The variable's shape.
    pub expected: Vec<i64>,
    /// The file tensor's shape.
    pub found: Vec<i64>,
}

/// What an import did, key by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Model variables that were filled from the file.
    pub loaded: Vec<String>,
    /// Model variables the file has no tensor for (left as initialised).
    pub missing: Vec<String>,
    /// File keys (after mapping) that name no model variable.
    pub unexpected: Vec<String>,
    /// Variables whose file tensor has another shape (left as initialised).
    pub mismatched: Vec<ShapeMismatch>,
    /// File keys skipped on purpose by the key map.
    pub ignored: Vec<String>,
    /// Variables loaded from a tensor of another dtype: (name, file dtype, model dtype).
    pub converted: Vec<(String, Kind, Kind)>,
}

impl ImportReport {
    /// True when every variable was loaded and nothing was unexpected or mismatched.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// One line: the counts, and the first few keys of each problem.
    pub fn summary(&self) -> String {
        fn first(keys: &[String]) -> String {
            let mut s = keys.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            if keys.len() > 3 {
                s.push_str(&format!(", ... ({} more)", keys.len() - 3));
            }
            s
        }
        let mut parts = vec![format!("{} loaded", self.loaded.len())];
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} missing: {}",
                self.missing.len(),
                first(&self.missing)
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected: {}",
                self.unexpected.len(),
                first(&self.unexpected)
            ));
        }
        if !self.mismatched.is_empty() {
            let shown: Vec<String> = self
                .mismatched
                .iter()
                .map(|m| format!("{} model {:?} file {:?}", m.name, m.expected, m.found))
                .collect();
            parts.push(format!(
                "{} shape-mismatched: {}",
                self.mismatched.len(),
                first(&shown)
            ));
        }
        if !self.ignored.is_empty() {
            parts.push(format!("{} ignored", self.ignored.len()));
        }
        if !self.converted.is_empty() {
            let (_, from, to) = &self.converted[0];
            parts.push(format!(
                "{} converted to the model dtype (e.g. {from:?} -> {to:?})",
                self.converted.len()
            ));
        }
        parts.join("; ")
    }
}

impl ImportReport {
    /// The report as JSON: `loaded`, `missing`, `unexpected`, `ignored` (key lists),
    /// `mismatched` (name, model shape, file shape) and `converted` (name, file dtype, model
    /// dtype).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "complete": self.is_complete(),
            "loaded": self.loaded,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "ignored": self.ignored,
            "mismatched": self.mismatched.iter().map(|m| serde_json::json!({
                "name": m.name, "model": m.expected, "file": m.found,
            })).collect::<Vec<_>>(),
            "converted": self.converted.iter().map(|(name, from, to)| serde_json::json!({
                "name": name, "file": format!("{from:?}"), "model": format!("{to:?}"),
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Reads every tensor of a safetensors file (on the CPU, in the file's dtype).
pub fn read_safetensors(path: &Path) -> Result<NamedTensors, ModelError> {
    if !path.is_file() {
        return Err(ModelError::io(path, "no such file"));
    }
    Tensor::read_safetensors(path).map_err(|e| ModelError::io(path, e))
}

/// Reads every tensor of a weight file, safetensors or PyTorch checkpoint (zip or legacy
/// format), on the CPU in the file's dtypes. The format comes from the file's first bytes, not
/// its extension.
pub fn read_weights(path: &Path) -> Result<NamedTensors, ModelError> {
    use crate::pth::{read_pth, sniff, Format};
    if !path.is_file() {
        return Err(ModelError::io(path, "no such file"));
    }
    match sniff(path)? {
        Some(Format::Safetensors) => read_safetensors(path),
        Some(Format::Zip | Format::Legacy) => read_pth(path),
        None => Err(ModelError::io(
            path,
            "not a weight file: neither safetensors nor a PyTorch checkpoint (.pth, .pt, .bin)",
        )),
    }
}

/// Loads a weight file of any format [`read_weights`] takes into the variables of `vs` whose
/// names start with `scope` (`""` for all): `map` gives each file key's name below the scope.
/// Missing, unexpected or mismatched keys are an error that names them unless `allow_partial`.
pub fn import_weights(
    vs: &VarStore,
    scope: &str,
    path: &Path,
    map: KeyMap<'_>,
    allow_partial: bool,
) -> Result<ImportReport, ModelError> {
    let tensors = read_weights(path)?;
    import_scoped(vs, scope, tensors, path, map, allow_partial)
}

/// Loads a safetensors file into `vs` through `map`; see the module docs for the rules.
pub fn import_safetensors(
    vs: &VarStore,
    path: &Path,
    map: KeyMap<'_>,
    allow_partial: bool,
) -> Result<ImportReport, ModelError> {
    let tensors = read_safetensors(path)?;
    import_tensors(vs, tensors, path, map, allow_partial)
}

/// Loads named tensors into `vs` through `map`; `source` names them in errors.
pub fn import_tensors(
    vs: &VarStore,
    tensors: NamedTensors,
    source: &Path,
    map: KeyMap<'_>,
    allow_partial: bool,
) -> Result<ImportReport, ModelError> {
    import_scoped(vs, "", tensors, source, map, allow_partial)
}

/// [`import_tensors`] into the variables under `scope` only; the report names variables
/// without the scope.
pub fn import_scoped(
    vs: &VarStore,
    scope: &str,
    tensors: NamedTensors,
    source: &Path,
    map: KeyMap<'_>,
    allow_partial: bool,
) -> Result<ImportReport, ModelError> {
    let vars: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(scope).map(|k| (k.to_string(), v)))
        .collect();
    if vars.is_empty() {
        return Err(ModelError::InvalidConfig(format!(
            "the model has no variables under `{scope}` to import {} into",
            source.display()
        )));
    }
    // `nn::Path` renames a second variable of the same name to `name__1`: that is a bug in a
    // model definition, and such a name would never match a checkpoint key.
    if let Some(dup) = vars.keys().find(|k| is_renamed_duplicate(k)) {
        return Err(ModelError::InvalidConfig(format!(
            "model variable `{dup}` is a duplicate that tch renamed"
        )));
    }
    let mut report = ImportReport::default();
    let mut sources: HashMap<String, String> = HashMap::new();
    let mut to_copy: Vec<(String, Tensor)> = Vec::new();
    for (key, tensor) in tensors {
        let name = match map(&key) {
            KeyAction::Ignore => {
                report.ignored.push(key);
                continue;
            }
            KeyAction::Load(name) => name,
        };
        if let Some(previous) = sources.insert(name.clone(), key.clone()) {
            return Err(ModelError::Import {
                path: source.to_path_buf(),
                summary: format!("keys `{previous}` and `{key}` both map to `{name}`"),
            });
        }
        let Some(var) = vars.get(&name) else {
            report.unexpected.push(name);
            continue;
        };
        let (expected, found) = (var.size(), tensor.size());
        if expected != found {
            report.mismatched.push(ShapeMismatch {
                name,
                expected,
                found,
            });
            continue;
        }
        if !is_float(var.kind()) || !is_float(tensor.kind()) {
            if var.kind() != tensor.kind() {
                report.mismatched.push(ShapeMismatch {
                    name: format!("{name} (dtype {:?}, file {:?})", var.kind(), tensor.kind()),
                    expected,
                    found,
                });
                continue;
            }
        } else if var.kind() != tensor.kind() {
            report
                .converted
                .push((name.clone(), tensor.kind(), var.kind()));
        }
        to_copy.push((name, tensor));
    }
    report.missing = vars
        .keys()
        .filter(|k| !sources.contains_key(*k))
        .cloned()
        .collect();
    report.unexpected.sort();
    report.mismatched.sort_by(|a, b| a.name.cmp(&b.name));
    report.converted.sort_by(|a, b| a.0.cmp(&b.0));
    report.ignored.sort();
    if !allow_partial && !report.is_complete() {
        return Err(ModelError::Import {
            path: source.to_path_buf(),
            summary: report.summary(),
        });
    }
    // Weights that are NaN or infinite (a diverged run's) would make every output NaN: refuse
    // them by name before anything is copied.
    for (name, tensor) in &to_copy {
        if is_float(tensor.kind()) {
            let bad = tensor
                .isfinite()
                .logical_not()
                .sum(Kind::Int64)
                .int64_value(&[]);
            if bad > 0 {
                return Err(ModelError::Import {
                    path: source.to_path_buf(),
                    summary: format!(
                        "`{name}` holds {bad} NaN or infinite value(s) of {}",
                        tensor.numel()
                    ),
                });
            }
        }
    }
    let _guard = tch::no_grad_guard();
    for (name, tensor) in to_copy {
        let mut var = vars[&name].shallow_clone();
        var.f_copy_(&tensor)?;
        report.loaded.push(name);
    }
    report.loaded.sort();
    Ok(report)
}

/// Writes every variable of `vs` to a safetensors file, atomically (temp file, then rename).
pub fn save_safetensors(vs: &VarStore, path: &Path) -> Result<(), ModelError> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let named: Vec<(String, Tensor)> = vars
        .into_iter()
        .map(|(k, v)| (k, v.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    let tmp = temp_path(path);
    Tensor::write_safetensors(&named, &tmp).map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

/// `dir/.name.tmp-<pid>` beside `path`, for atomic writes.
pub(crate) fn temp_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
    )
}

fn is_renamed_duplicate(name: &str) -> bool {
    name.rsplit_once("__")
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Strips the wrapper prefixes that training scripts add (`module.` from DataParallel, and the
/// given model prefixes such as `bert.`), repeatedly, from the front of a key.
pub fn strip_prefixes<'k>(mut key: &'k str, prefixes: &[&str]) -> &'k str {
    loop {
        let before = key;
        for p in prefixes {
            if let Some(rest) = key.strip_prefix(p) {
                key = rest;
            }
        }
        if before == key {
            return key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    fn model() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let p = vs.root();
        let _ = nn::linear(&p / "fc", 3, 2, Default::default());
        vs
    }

    fn write(dir: &Path, tensors: &[(&str, Tensor)]) -> std::path::PathBuf {
        let path = dir.join("w.safetensors");
        Tensor::write_safetensors(tensors, &path).unwrap();
        path
    }

    #[test]
    fn complete_file_loads_and_keeps_model_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let w = Tensor::arange(6, (Kind::Half, Device::Cpu)).reshape([2, 3]);
        let b = Tensor::from_slice(&[0.5f32, -1.0]);
        let path = write(dir.path(), &[("fc.weight", w), ("fc.bias", b)]);
        let vs = model();
        let r = import_safetensors(&vs, &path, &identity_keys, false).unwrap();
        assert!(r.is_complete());
        assert_eq!(r.loaded, vec!["fc.bias", "fc.weight"]);
        assert_eq!(
            r.converted,
            vec![("fc.weight".to_string(), Kind::Half, Kind::Float)]
        );
        let vars = vs.variables();
        assert_eq!(vars["fc.weight"].kind(), Kind::Float);
        assert_eq!(vars["fc.weight"].double_value(&[1, 2]), 5.0);
        assert_eq!(vars["fc.bias"].double_value(&[1]), -1.0);
    }

    #[test]
    fn missing_key_is_an_error_unless_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &[(
                "fc.weight",
                Tensor::ones([2, 3], (Kind::Float, Device::Cpu)),
            )],
        );
        let vs = model();
        let err = import_safetensors(&vs, &path, &identity_keys, false).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("1 missing: fc.bias"), "{msg}");
        assert!(msg.contains("w.safetensors"), "{msg}");
        // Nothing was copied when the import failed.
        assert_ne!(vs.variables()["fc.weight"].double_value(&[0, 0]), 1.0);
        let r = import_safetensors(&vs, &path, &identity_keys, true).unwrap();
        assert_eq!(r.missing, vec!["fc.bias"]);
        assert_eq!(vs.variables()["fc.weight"].double_value(&[0, 0]), 1.0);
    }

    #[test]
    fn unexpected_key_is_an_error_unless_partial_or_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &[
                (
                    "fc.weight",
                    Tensor::ones([2, 3], (Kind::Float, Device::Cpu)),
                ),
                ("fc.bias", Tensor::ones([2], (Kind::Float, Device::Cpu))),
                ("head.weight", Tensor::ones([4], (Kind::Float, Device::Cpu))),
            ],
        );
        let vs = model();
        let msg = import_safetensors(&vs, &path, &identity_keys, false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("1 unexpected: head.weight"), "{msg}");
        let r = import_safetensors(&vs, &path, &identity_keys, true).unwrap();
        assert_eq!(r.unexpected, vec!["head.weight"]);
        let skip_head = |k: &str| {
            if k.starts_with("head.") {
                KeyAction::Ignore
            } else {
                KeyAction::Load(k.to_string())
            }
        };
        let r = import_safetensors(&vs, &path, &skip_head, false).unwrap();
        assert!(r.is_complete());
        assert_eq!(r.ignored, vec!["head.weight"]);
    }

    #[test]
    fn shape_mismatch_is_an_error_and_never_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &[
                (
                    "fc.weight",
                    Tensor::ones([3, 2], (Kind::Float, Device::Cpu)),
                ),
                ("fc.bias", Tensor::ones([2], (Kind::Float, Device::Cpu))),
            ],
        );
        let vs = model();
        let msg = import_safetensors(&vs, &path, &identity_keys, false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("1 shape-mismatched: fc.weight model [2, 3] file [3, 2]"),
            "{msg}"
        );
        let r = import_safetensors(&vs, &path, &identity_keys, true).unwrap();
        assert_eq!(r.mismatched.len(), 1);
        assert_eq!(r.loaded, vec!["fc.bias"]);
        assert_eq!(vs.variables()["fc.weight"].size(), vec![2, 3]);
    }

    #[test]
    fn two_keys_on_one_variable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &[
                (
                    "fc.weight",
                    Tensor::ones([2, 3], (Kind::Float, Device::Cpu)),
                ),
                (
                    "module.fc.weight",
                    Tensor::ones([2, 3], (Kind::Float, Device::Cpu)),
                ),
                ("fc.bias", Tensor::ones([2], (Kind::Float, Device::Cpu))),
            ],
        );
        let vs = model();
        let strip = |k: &str| KeyAction::Load(strip_prefixes(k, &["module."]).to_string());
        let msg = import_safetensors(&vs, &path, &strip, true)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("both map to `fc.weight`"), "{msg}");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let vs = model();
        let msg = import_safetensors(
            &vs,
            Path::new("/no/such.safetensors"),
            &identity_keys,
            false,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(msg, "/no/such.safetensors: no such file");
    }

    #[test]
    fn non_finite_weights_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let vs = VarStore::new(tch::Device::Cpu);
        let _w = vs.root().zeros("w", &[3]);
        let bad = Tensor::from_slice(&[1.0f32, f32::NAN, f32::INFINITY]);
        Tensor::write_safetensors(&[("w", &bad)], &path).unwrap();
        let err = import_safetensors(&vs, &path, &identity_keys, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`w` holds 2 NaN or infinite value(s) of 3"),
            "{err}"
        );
        assert!(err.contains("w.safetensors"), "{err}");
    }

    #[test]
    fn save_then_import_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let a = model();
        save_safetensors(&a, &path).unwrap();
        let b = model();
        import_safetensors(&b, &path, &identity_keys, false).unwrap();
        let (va, vb) = (a.variables(), b.variables());
        assert!(va["fc.weight"].equal(&vb["fc.weight"]));
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "no temp file left"
        );
    }

    #[test]
    fn strip_prefixes_repeats() {
        assert_eq!(strip_prefixes("module.bert.x", &["module.", "bert."]), "x");
        assert_eq!(strip_prefixes("x.bert.y", &["bert."]), "x.bert.y");
    }
}
