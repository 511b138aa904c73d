//! PyTorch checkpoints (`.pth`, `.pt`, `.bin`) read in Rust, without Python.
//!
//! `torch.save` writes one of two formats:
//!
//! - **zip** (torch >= 1.6): an archive with `<name>/data.pkl`, a pickle whose tensors refer to
//!   storages by key, and one record `<name>/data/<key>` of raw little-endian bytes per storage;
//! - **legacy**: five things one after the other, a pickled magic number, the protocol version
//!   and the system info, the main pickle, the pickled list of storage keys, then each storage
//!   as an 8-byte element count and its bytes.
//!
//! Both pickles are read by an interpreter that knows only tensors, storages, the standard
//! rebuild functions (`torch._utils._rebuild_tensor_v2` and friends) and plain containers
//! (dict, `OrderedDict`, list, tuple, numbers, strings). Any other class or function named in
//! the file is an error that quotes it; nothing in a checkpoint is ever executed.
//!
//! Tensors are built as in PyTorch: a strided view (`size`, `stride`, `offset`) of their
//! storage, so tensors that share a storage and non-contiguous views come out as saved. The
//! result is the state dict's tensors, in file order, ready for [`crate::import`].
//!
//! ```no_run
//! let tensors = umcl_models::pth::read_pth(std::path::Path::new("resnet50-0676ba61.pth"))?;
//! for (name, t) in &tensors {
//!     println!("{name}: {:?} {:?}", t.size(), t.kind());
//! }
//! # Ok::<(), umcl_models::ModelError>(())
//! ```

mod pickle;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::ModelError;
use crate::import::NamedTensors;
use pickle::{Dtype, Id, Obj, Pickle, StorageRef, TensorRef};

/// The magic number the legacy format pickles first.
const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;
/// The legacy format's protocol version.
const LEGACY_PROTOCOL: i64 = 1001;
/// Keys under which training scripts nest the model's state dict, tried in this order when the
/// file's top-level dict is not a state dict itself.
const NESTED_KEYS: [&str; 5] = ["state_dict", "model_state_dict", "model", "module", "net"];

/// How a file's bytes begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// torch's zip archive (torch >= 1.6).
    Zip,
    /// torch's legacy pickle format.
    Legacy,
    /// A safetensors file.
    Safetensors,
}

/// Tells the format of a weight file from its first bytes; `None` when it is none of them.
pub fn sniff(path: &Path) -> Result<Option<Format>, ModelError> {
    let mut head = [0u8; 16];
    let mut f = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let n = read_up_to(&mut f, &mut head).map_err(|e| ModelError::io(path, e))?;
    let head = &head[..n];
    Ok(if head.starts_with(b"PK\x03\x04") {
        Some(Format::Zip)
    } else if head.starts_with(b"\x80\x02\x8a\x0a") {
        Some(Format::Legacy)
    } else if head.len() >= 9 && head[8] == b'{' {
        Some(Format::Safetensors)
    } else {
        None
    })
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads the state dict of a PyTorch checkpoint (zip or legacy format) on the CPU, each tensor
/// in its saved dtype. A checkpoint whose top level is not a state dict may hold one under
/// `state_dict`, `model_state_dict`, `model`, `module` or `net`.
pub fn read_pth(path: &Path) -> Result<NamedTensors, ModelError> {
    if !path.is_file() {
        return Err(ModelError::io(path, "no such file"));
    }
    let fail =
        |msg: String| ModelError::io(path, format!("not a readable PyTorch checkpoint: {msg}"));
    match sniff(path)? {
        Some(Format::Zip) => read_zip(path).map_err(fail),
        Some(Format::Legacy) => {
            let data = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
            read_legacy(&data).map_err(fail)
        }
        Some(Format::Safetensors) => Err(fail(
            "this is a safetensors file (read it with import::read_weights)".into(),
        )),
        None => Err(fail(
            "it is neither a torch zip archive nor a legacy torch pickle (a .tar checkpoint \
             from torch < 0.4 is not supported)"
                .into(),
        )),
    }
}

fn read_zip(path: &Path) -> Result<NamedTensors, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    // A record's size comes from its header: never reserve more than the file holds.
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("zip archive: {e}"))?;
    let pkl: Vec<String> = zip
        .file_names()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .collect();
    let [pkl] = &pkl[..] else {
        return Err(format!(
            "the archive has {} `<name>/data.pkl` records, expected one",
            pkl.len()
        ));
    };
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut record = |name: &str| -> Result<Vec<u8>, String> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| format!("record `{name}`: {e}"))?;
        // torch writes every record uncompressed; a compressed one (a zip bomb, say) is not
        // torch's.
        if f.compression() != zip::CompressionMethod::Stored {
            return Err(format!(
                "record `{name}` is compressed ({}); torch writes its records uncompressed",
                f.compression()
            ));
        }
        let mut buf = Vec::with_capacity(usize::try_from(f.size().min(file_len)).unwrap_or(0));
        f.read_to_end(&mut buf)
            .map_err(|e| format!("record `{name}`: {e}"))?;
        Ok(buf)
    };
    if let Ok(order) = record(&format!("{prefix}byteorder")) {
        if order != b"little" {
            return Err(format!(
                "byte order `{}` (only little-endian checkpoints are read)",
                String::from_utf8_lossy(&order)
            ));
        }
    }
    let data = record(pkl)?;
    let pickle = pickle::parse(&data).map_err(|e| format!("{pkl}: {e}"))?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in storage_keys(&pickle) {
        let bytes = record(&format!("{prefix}data/{key}"))?;
        storages.insert(key, bytes);
    }
    state_dict(&pickle, &storages)
}

fn read_legacy(data: &[u8]) -> Result<NamedTensors, String> {
    let mut at = 0usize;
    let mut next = |what: &str| -> Result<Pickle, String> {
        let p = pickle::parse(&data[at..]).map_err(|e| format!("{what}: {e}"))?;
        at += p.len;
        Ok(p)
    };
    let magic = next("magic number")?;
    let magic_ok = match magic.get(magic.root) {
        Obj::BigInt(b) if b.len() <= 16 => {
            let mut a = [0u8; 16];
            a[..b.len()].copy_from_slice(b);
            u128::from_le_bytes(a) == LEGACY_MAGIC
        }
        _ => false,
    };
    if !magic_ok {
        return Err("the legacy magic number is wrong".into());
    }
    let protocol = next("protocol version")?;
    if protocol.int(protocol.root) != Some(LEGACY_PROTOCOL) {
        return Err(format!("legacy protocol version is not {LEGACY_PROTOCOL}"));
    }
    let sys = next("system info")?;
    if let Obj::Dict(items) = sys.get(sys.root) {
        for &(k, v) in items {
            if sys.str(k) == Some("little_endian") && sys.int(v) == Some(0) {
                return Err("a big-endian checkpoint (only little-endian ones are read)".into());
            }
        }
    }
    let main = next("state dict")?;
    let keys = next("storage keys")?;
    let Obj::List(key_ids) = keys.get(keys.root) else {
        return Err("the storage key list is not a list".into());
    };
    let dtypes: HashMap<String, Dtype> = all_storages(&main)
        .map(|s| (s.key.clone(), s.dtype))
        .collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for &k in key_ids {
        let key = keys
            .str(k)
            .ok_or("a storage key is not a string")?
            .to_string();
        let dtype = *dtypes
            .get(&key)
            .ok_or_else(|| format!("storage `{key}` is listed but no tensor uses it"))?;
        let head = data
            .get(at..at + 8)
            .ok_or_else(|| format!("storage `{key}`: truncated before its size"))?;
        let numel = u64::from_le_bytes(head.try_into().map_err(|_| "size")?);
        at += 8;
        let len = numel
            .checked_mul(dtype.size() as u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("storage `{key}`: size {numel} too large"))?;
        let bytes = data
            .get(at..at.saturating_add(len))
            .filter(|b| b.len() == len)
            .ok_or_else(|| {
                format!("storage `{key}`: truncated ({len} bytes announced, fewer present)")
            })?;
        at += len;
        storages.insert(key, bytes.to_vec());
    }
    state_dict(&main, &storages)
}

/// Every storage reference the pickle holds.
fn all_storages(p: &Pickle) -> impl Iterator<Item = &StorageRef> {
    p.objs.iter().filter_map(|o| match o {
        Obj::Storage(s) => Some(s),
        Obj::Tensor(t) => Some(&t.storage),
        _ => None,
    })
}

fn storage_keys(p: &Pickle) -> Vec<String> {
    let mut keys: Vec<String> = all_storages(p).map(|s| s.key.clone()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The tensors of the state dict the root holds, in file order.
fn state_dict(p: &Pickle, storages: &HashMap<String, Vec<u8>>) -> Result<NamedTensors, String> {
    let dict = find_state_dict(p)?;
    let mut cache: HashMap<(String, Dtype), Tensor> = HashMap::new();
    let mut out = Vec::with_capacity(dict.len());
    for &(k, v) in dict {
        let name = p
            .str(k)
            .ok_or_else(|| format!("a state-dict key is {}, not a string", p.get(k).kind()))?;
        let Obj::Tensor(t) = p.get(v) else {
            return Err(format!("`{name}` holds {}, not a tensor", p.get(v).kind()));
        };
        let tensor = build(t, storages, &mut cache).map_err(|e| format!("`{name}`: {e}"))?;
        out.push((name.to_string(), tensor));
    }
    Ok(out)
}

fn dict_items(p: &Pickle, id: Id) -> Option<&[(Id, Id)]> {
    match p.get(id) {
        Obj::Dict(items) => Some(items),
        _ => None,
    }
}

fn is_state_dict(p: &Pickle, items: &[(Id, Id)]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|&(k, v)| p.str(k).is_some() && matches!(p.get(v), Obj::Tensor(_)))
}

fn find_state_dict(p: &Pickle) -> Result<&[(Id, Id)], String> {
    let root = dict_items(p, p.root).ok_or_else(|| {
        format!(
            "the checkpoint holds {}, not a dict of tensors",
            p.get(p.root).kind()
        )
    })?;
    if root.is_empty() {
        return Err("the checkpoint's state dict is empty".into());
    }
    let has_tensor = root
        .iter()
        .any(|&(_, v)| matches!(p.get(v), Obj::Tensor(_)));
    if has_tensor {
        // The root is the state dict; a non-tensor value in it is reported by name.
        return Ok(root);
    }
    for want in NESTED_KEYS {
        let nested = root
            .iter()
            .find(|&&(k, _)| p.str(k) == Some(want))
            .and_then(|&(_, v)| dict_items(p, v));
        if let Some(items) = nested.filter(|items| is_state_dict(p, items)) {
            return Ok(items);
        }
    }
    let keys: Vec<String> = root
        .iter()
        .take(8)
        .map(|&(k, v)| {
            let k = p.str(k).unwrap_or("?");
            format!("{k} ({})", p.get(v).kind())
        })
        .collect();
    Err(format!(
        "found no state dict: the top level holds {} and none of {} is a dict of tensors",
        keys.join(", "),
        NESTED_KEYS.join(", ")
    ))
}

fn kind(d: Dtype) -> Kind {
    match d {
        Dtype::F64 => Kind::Double,
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::Bool => Kind::Bool,
    }
}

/// The strided view `t` describes, after checking that it stays inside its storage.
fn build(
    t: &TensorRef,
    storages: &HashMap<String, Vec<u8>>,
    cache: &mut HashMap<(String, Dtype), Tensor>,
) -> Result<Tensor, String> {
    let s = &t.storage;
    let bytes = storages
        .get(&s.key)
        .ok_or_else(|| format!("storage `{}` is missing", s.key))?;
    let elem = s.dtype.size() as u64;
    let available = bytes.len() as u64 / elem;
    if s.numel > available {
        return Err(format!(
            "storage `{}` announces {} elements, the file holds {available}",
            s.key, s.numel
        ));
    }
    let (base, limit) = match s.view {
        None => (0, s.numel),
        Some((offset, len)) => {
            if offset.checked_add(len).is_none_or(|end| end > s.numel) {
                return Err(format!("a view of storage `{}` runs past its end", s.key));
            }
            (offset, len)
        }
    };
    if t.size.len() != t.stride.len() {
        return Err(format!(
            "size {:?} and stride {:?} differ in length",
            t.size, t.stride
        ));
    }
    if t.offset < 0 || t.size.iter().any(|&d| d < 0) || t.stride.iter().any(|&d| d < 0) {
        return Err(format!(
            "negative offset, size or stride (offset {}, size {:?}, stride {:?})",
            t.offset, t.size, t.stride
        ));
    }
    let empty = t.size.contains(&0);
    if !empty {
        // The last element the view touches, in storage elements.
        let mut last = t.offset as u128;
        for (&d, &st) in t.size.iter().zip(&t.stride) {
            last += (d as u128 - 1) * st as u128;
        }
        if last >= limit as u128 {
            return Err(format!(
                "the view (offset {}, size {:?}, stride {:?}) reaches element {last} of a \
                 storage of {limit}",
                t.offset, t.size, t.stride
            ));
        }
    }
    let k = kind(s.dtype);
    let storage = match cache.get(&(s.key.clone(), s.dtype)) {
        Some(st) => st.shallow_clone(),
        None => {
            let len = (s.numel * elem) as usize;
            let st = Tensor::f_from_data_size(&bytes[..len], &[s.numel as i64], k)
                .map_err(|e| e.to_string())?;
            cache.insert((s.key.clone(), s.dtype), st.shallow_clone());
            st
        }
    };
    let view = storage
        .f_as_strided(
            t.size.as_slice(),
            t.stride.as_slice(),
            t.offset + base as i64,
        )
        .map_err(|e| e.to_string())?;
    Ok(view)
}
