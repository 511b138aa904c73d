//! `--set key=value` overrides: each one applied to the serialised config and read back
//! through the typed config, so unknown keys and bad values are reported with their `--set`.

use serde::Deserialize;

use super::{ConfigError, TrainConfig};

impl TrainConfig {
    /// Applies `key=value` overrides (value in TOML syntax; a bare word is taken as a string),
    /// then validates. Unknown keys are errors.
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<(), ConfigError> {
        if overrides.is_empty() {
            return Ok(());
        }
        let mut doc = toml::Value::try_from(&*self).map_err(|e| ConfigError::Parse {
            origin: "configuration".into(),
            message: e.to_string(),
        })?;
        for item in overrides {
            let origin = || format!("--set {item}");
            let (key, raw) = item.split_once('=').ok_or_else(|| ConfigError::Parse {
                origin: origin(),
                message: "expected KEY=VALUE, e.g. optim.lr=1e-4".into(),
            })?;
            let key = key.trim();
            let raw = raw.trim();
            let value = parse_value(raw);
            let typed = !value.is_str();
            set_path(&mut doc, key, value).map_err(|message| ConfigError::Parse {
                origin: origin(),
                message,
            })?;
            // Each override is read back at once, so an unknown key or a bad value is
            // reported with the `--set` that brought it.
            if let Err(e) = Self::deserialize(doc.clone()) {
                // A bare word that TOML reads as something else (`nan`, `inf`, `true`, a
                // number) is the string it spells where the key wants a string
                // (`run.name=nan`).
                let as_string = typed.then(|| {
                    let mut retry = doc.clone();
                    set_path(&mut retry, key, toml::Value::String(raw.to_string()))
                        .ok()
                        .filter(|()| Self::deserialize(retry.clone()).is_ok())
                        .map(|()| retry)
                });
                match as_string.flatten() {
                    Some(retry) => doc = retry,
                    None => {
                        return Err(ConfigError::Parse {
                            origin: origin(),
                            message: e.message().to_string(),
                        })
                    }
                }
            }
        }
        let cfg: Self = doc
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: "--set".into(),
                message: e.to_string(),
            })?;
        cfg.validate()?;
        *self = cfg;
        Ok(())
    }
}

/// A bare word is a string; anything else is parsed as a TOML value.
fn parse_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(doc: &mut toml::Value, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().ok_or_else(|| "empty key".to_string())?;
    let mut node = doc;
    for (i, part) in parents.iter().enumerate() {
        let table = node
            .as_table_mut()
            .ok_or_else(|| format!("`{}` is not a table", parts[..i].join(".")))?;
        node = table
            .get_mut(*part)
            .ok_or_else(|| format!("unknown key `{}`", parts[..=i].join(".")))?;
    }
    let table = node
        .as_table_mut()
        .ok_or_else(|| format!("`{}` is not a table", parents.join(".")))?;
    // A key absent from the table is an optional one left at its default, or unknown:
    // reading the table back into the typed config decides (`deny_unknown_fields`).
    // Numbers: let an integer stand for a float field (`optim.lr=1`).
    let value = match (table.get(*last), value) {
        (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (_, v) => v,
    };
    table.insert(last.to_string(), value);
    Ok(())
}
