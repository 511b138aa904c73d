//! A pickle reader that interprets, and never executes, the subset of pickle that `torch.save`
//! writes for a state dict.
//!
//! Values live in an arena ([`Pickle::objs`]) and the machine's stack and memo hold indices into
//! it, so that the dict a `BINPUT` memoised before its `SETITEMS` is the one a later `BINGET`
//! sees. A `GLOBAL` only names a callable; `REDUCE` applies it only when it is on the allow-list
//! of [`Callable`] (the tensor and parameter rebuild functions, `OrderedDict`), and any other
//! name is an error that quotes it. Persistent ids (`BINPERSID`) become storage references that
//! the caller resolves against the archive's storage records.

use std::collections::HashMap;

/// An index into [`Pickle::objs`].
pub(crate) type Id = usize;

/// The element type of a storage, from its `torch.<Name>Storage` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A storage reference from a persistent id: `('storage', <class>, key, location, numel[, view])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    pub dtype: Dtype,
    /// The record the bytes live in (`data/<key>` in a zip archive).
    pub key: String,
    /// Elements of the whole storage.
    pub numel: u64,
    /// Legacy storage views: (offset, elements) into the storage named by `key`.
    pub view: Option<(u64, u64)>,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// The callables a checkpoint may name. Everything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callable {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    /// `torch.Tensor` or `torch.nn.parameter.Parameter`, as the type argument of
    /// `_rebuild_from_type_v2` only.
    TensorType,
}

impl Callable {
    fn from_global(module: &str, name: &str) -> Option<Self> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Self::OrderedDict,
            ("torch._utils", "_rebuild_tensor") => Self::RebuildTensor,
            ("torch._utils", "_rebuild_tensor_v2") => Self::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Self::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Self::RebuildParameterWithState,
            ("torch._tensor", "_rebuild_from_type_v2") => Self::RebuildFromTypeV2,
            ("torch", "Tensor") | ("torch.nn.parameter", "Parameter") => Self::TensorType,
            _ => return None,
        })
    }
}

/// A value of the pickle machine.
#[derive(Debug, Clone)]
pub(crate) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, little-endian two's complement (the legacy magic number).
    BigInt(Vec<u8>),
    /// A float (its value is never needed for weights).
    Float,
    Str(String),
    /// Bytes (their value is never needed for weights).
    Bytes,
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    /// A storage class, `torch.<Name>Storage`.
    StorageClass(Dtype),
    Callable(Callable),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl Obj {
    /// A short name of the value's kind, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Bool(_) => "a bool",
            Self::Int(_) | Self::BigInt(_) => "an int",
            Self::Float => "a float",
            Self::Str(_) => "a string",
            Self::Bytes => "bytes",
            Self::Tuple(_) => "a tuple",
            Self::List(_) => "a list",
            Self::Dict(_) => "a dict",
            Self::StorageClass(_) | Self::Callable(_) => "a class or function",
            Self::Storage(_) => "a storage",
            Self::Tensor(_) => "a tensor",
        }
    }
}

/// The result of one pickle: the arena and the root value.
pub(crate) struct Pickle {
    pub objs: Vec<Obj>,
    pub root: Id,
    /// Bytes the pickle took, up to and including `STOP`.
    pub len: usize,
}

impl Pickle {
    pub(crate) fn get(&self, id: Id) -> &Obj {
        &self.objs[id]
    }

    /// The value as a string, if it is one.
    pub(crate) fn str(&self, id: Id) -> Option<&str> {
        match self.get(id) {
            Obj::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer, if it is one (`bool` counts, as in Python).
    pub(crate) fn int(&self, id: Id) -> Option<i64> {
        match self.get(id) {
            Obj::Int(v) => Some(*v),
            Obj::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
}

/// Largest pickle value count: a state dict of a billion-parameter model has a few thousand
/// tensors, each a handful of values. A file that asks for more is not a checkpoint.
const MAX_OBJS: usize = 50_000_000;

/// Parses one pickle from the start of `data` (the caller names the file in errors).
pub(crate) fn parse(data: &[u8]) -> Result<Pickle, String> {
    Machine::new(data).run()
}

enum Slot {
    Mark,
    Val(Id),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    objs: Vec<Obj>,
    stack: Vec<Slot>,
    memo: HashMap<u64, Id>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            objs: Vec::new(),
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("truncated pickle: {n} byte(s) wanted at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self, n: usize) -> Result<u64, String> {
        let b = self.take(n)?;
        let mut v = 0u64;
        for (i, x) in b.iter().enumerate() {
            v |= u64::from(*x) << (8 * i);
        }
        Ok(v)
    }

    fn len_prefixed(&mut self, width: usize) -> Result<&'a [u8], String> {
        let n = self.uint(width)?;
        let n = usize::try_from(n).map_err(|_| format!("length {n} too large"))?;
        self.take(n)
    }

    fn push(&mut self, obj: Obj) -> Result<(), String> {
        if self.objs.len() >= MAX_OBJS {
            return Err(format!("more than {MAX_OBJS} values: not a checkpoint"));
        }
        self.objs.push(obj);
        self.stack.push(Slot::Val(self.objs.len() - 1));
        Ok(())
    }

    fn pop(&mut self, op: &str) -> Result<Id, String> {
        match self.stack.pop() {
            Some(Slot::Val(id)) => Ok(id),
            Some(Slot::Mark) => Err(format!("{op}: found a mark where a value was expected")),
            None => Err(format!("{op}: the stack is empty")),
        }
    }

    fn top(&self, op: &str) -> Result<Id, String> {
        match self.stack.last() {
            Some(Slot::Val(id)) => Ok(*id),
            _ => Err(format!("{op}: no value on the stack")),
        }
    }

    /// The values above the topmost mark, which is removed.
    fn pop_mark(&mut self, op: &str) -> Result<Vec<Id>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| format!("{op}: no mark on the stack"))?;
        let items = self
            .stack
            .drain(at + 1..)
            .map(|s| match s {
                Slot::Val(id) => id,
                Slot::Mark => unreachable!("the mark found is the topmost"),
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn memo_get(&self, key: u64) -> Result<Id, String> {
        self.memo
            .get(&key)
            .copied()
            .ok_or_else(|| format!("memo entry {key} read before it was written"))
    }

    fn run(mut self) -> Result<Pickle, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let v = self.u8()?;
                    if !(2..=5).contains(&v) {
                        return Err(format!(
                            "pickle protocol {v} (only the binary protocols 2 to 5 are read)"
                        ));
                    }
                }
                0x95 => {
                    // FRAME: a length hint.
                    self.take(8)?;
                }
                b'.' => {
                    // STOP
                    let root = self.pop("STOP")?;
                    return Ok(Pickle {
                        objs: self.objs,
                        root,
                        len: self.pos,
                    });
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.pop("POP")?;
                }
                b'1' => {
                    self.pop_mark("POP_MARK")?;
                }
                b'2' => {
                    let id = self.top("DUP")?;
                    self.stack.push(Slot::Val(id));
                }
                b'N' => self.push(Obj::None)?,
                0x88 => self.push(Obj::Bool(true))?,
                0x89 => self.push(Obj::Bool(false))?,
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push(Obj::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.uint(1)?;
                    self.push(Obj::Int(v as i64))?;
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push(Obj::Int(v as i64))?;
                }
                0x8a | 0x8b => {
                    // LONG1, LONG4: little-endian two's complement of the given length.
                    let width = if op == 0x8a { 1 } else { 4 };
                    let bytes = self.len_prefixed(width)?.to_vec();
                    self.push(long(bytes))?;
                }
                b'G' => {
                    // BINFLOAT
                    self.take(8)?;
                    self.push(Obj::Float)?;
                }
                b'X' | 0x8c | 0x8d => {
                    // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                    let width = match op {
                        b'X' => 4,
                        0x8c => 1,
                        _ => 8,
                    };
                    let b = self.len_prefixed(width)?;
                    let s = std::str::from_utf8(b)
                        .map_err(|_| format!("a string at byte {at} is not UTF-8"))?;
                    self.push(Obj::Str(s.to_string()))?;
                }
                b'T' | b'U' => {
                    // BINSTRING, SHORT_BINSTRING (Python 2 str): kept as text when it is.
                    let width = if op == b'T' { 4 } else { 1 };
                    let b = self.len_prefixed(width)?;
                    let obj = match std::str::from_utf8(b) {
                        Ok(s) => Obj::Str(s.to_string()),
                        Err(_) => Obj::Bytes,
                    };
                    self.push(obj)?;
                }
                b'B' | b'C' | 0x8e => {
                    // BINBYTES, SHORT_BINBYTES, BINBYTES8
                    let width = match op {
                        b'B' => 4,
                        b'C' => 1,
                        _ => 8,
                    };
                    self.len_prefixed(width)?;
                    self.push(Obj::Bytes)?;
                }
                b')' => self.push(Obj::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark("TUPLE")?;
                    self.push(Obj::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop("TUPLE1-3")?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items))?;
                }
                b']' => self.push(Obj::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark("LIST")?;
                    self.push(Obj::List(items))?;
                }
                b'}' => self.push(Obj::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark("DICT")?;
                    let pairs = pairs(&items, "DICT")?;
                    self.push(Obj::Dict(pairs))?;
                }
                b'a' => {
                    let v = self.pop("APPEND")?;
                    let list = self.top("APPEND")?;
                    self.extend_list(list, &[v])?;
                }
                b'e' => {
                    let items = self.pop_mark("APPENDS")?;
                    let list = self.top("APPENDS")?;
                    self.extend_list(list, &items)?;
                }
                b's' => {
                    let v = self.pop("SETITEM")?;
                    let k = self.pop("SETITEM")?;
                    let dict = self.top("SETITEM")?;
                    self.extend_dict(dict, &[(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark("SETITEMS")?;
                    let pairs = pairs(&items, "SETITEMS")?;
                    let dict = self.top("SETITEMS")?;
                    self.extend_dict(dict, &pairs)?;
                }
                b'q' => {
                    let key = self.uint(1)?;
                    self.memo.insert(key, self.top("BINPUT")?);
                }
                b'r' => {
                    let key = self.uint(4)?;
                    self.memo.insert(key, self.top("LONG_BINPUT")?);
                }
                0x94 => {
                    // MEMOIZE
                    let key = self.memo.len() as u64;
                    self.memo.insert(key, self.top("MEMOIZE")?);
                }
                b'h' => {
                    let key = self.uint(1)?;
                    let id = self.memo_get(key)?;
                    self.stack.push(Slot::Val(id));
                }
                b'j' => {
                    let key = self.uint(4)?;
                    let id = self.memo_get(key)?;
                    self.stack.push(Slot::Val(id));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let obj = global(&module, &name)?;
                    self.push(obj)?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    let (Obj::Str(module), Obj::Str(name)) =
                        (self.objs[module].clone(), self.objs[name].clone())
                    else {
                        return Err("STACK_GLOBAL: module and name must be strings".into());
                    };
                    let obj = global(&module, &name)?;
                    self.push(obj)?;
                }
                b'Q' => {
                    // BINPERSID
                    let pid = self.pop("BINPERSID")?;
                    let storage = self.persistent(pid)?;
                    self.push(Obj::Storage(storage))?;
                }
                b'R' => {
                    let args = self.pop("REDUCE")?;
                    let f = self.pop("REDUCE")?;
                    let obj = self.reduce(f, args)?;
                    self.push(obj)?;
                }
                b'b' => {
                    // BUILD: the state of an OrderedDict (its `_metadata`) or of a rebuilt
                    // tensor carries nothing the weights need.
                    let _state = self.pop("BUILD")?;
                    let target = self.top("BUILD")?;
                    match &self.objs[target] {
                        Obj::Dict(_) | Obj::Tensor(_) => {}
                        other => {
                            return Err(format!("BUILD on {} is not supported", other.kind()));
                        }
                    }
                }
                0x81 | 0x92 => {
                    return Err(
                        "the pickle creates an object of its own class (NEWOBJ): only tensors, \
                         storages and plain containers are read"
                            .into(),
                    );
                }
                b'P' => {
                    return Err("text persistent ids (protocol 0) are not supported".into());
                }
                _ => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{op:02x} at byte {at} (only what torch.save \
                         writes for a state dict is read)"
                    ));
                }
            }
        }
    }

    /// A newline-terminated line (the operands of `GLOBAL`).
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("GLOBAL: unterminated name")?;
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| "GLOBAL: name is not UTF-8")?;
        self.pos += end + 1;
        Ok(s.to_string())
    }

    fn extend_list(&mut self, list: Id, items: &[Id]) -> Result<(), String> {
        match &mut self.objs[list] {
            Obj::List(v) => {
                v.extend_from_slice(items);
                Ok(())
            }
            other => Err(format!("APPEND to {}", other.kind())),
        }
    }

    fn extend_dict(&mut self, dict: Id, items: &[(Id, Id)]) -> Result<(), String> {
        match &mut self.objs[dict] {
            Obj::Dict(v) => {
                v.extend_from_slice(items);
                Ok(())
            }
            other => Err(format!("SETITEM on {}", other.kind())),
        }
    }

    fn tuple(&self, id: Id, what: &str) -> Result<Vec<Id>, String> {
        match &self.objs[id] {
            Obj::Tuple(v) | Obj::List(v) => Ok(v.clone()),
            other => Err(format!("{what}: expected a tuple, found {}", other.kind())),
        }
    }

    fn int(&self, id: Id, what: &str) -> Result<i64, String> {
        match &self.objs[id] {
            Obj::Int(v) => Ok(*v),
            other => Err(format!("{what}: expected an int, found {}", other.kind())),
        }
    }

    fn ints(&self, id: Id, what: &str) -> Result<Vec<i64>, String> {
        self.tuple(id, what)?
            .into_iter()
            .map(|i| self.int(i, what))
            .collect()
    }

    /// `('storage', <storage class>, key, location, numel[, view_metadata])`.
    fn persistent(&self, pid: Id) -> Result<StorageRef, String> {
        let items = self.tuple(pid, "persistent id")?;
        let tag = items.first().map(|&i| &self.objs[i]);
        match tag {
            Some(Obj::Str(s)) if s == "storage" => {}
            Some(Obj::Str(s)) if s == "module" => {
                return Err(
                    "the checkpoint holds a pickled module with its source code: only state \
                     dicts (tensors) are read; save `model.state_dict()` instead"
                        .into(),
                )
            }
            _ => return Err("a persistent id that is not a storage".into()),
        }
        if items.len() < 5 {
            return Err(format!(
                "a storage id has {} fields, expected 5 or 6",
                items.len()
            ));
        }
        let dtype = match &self.objs[items[1]] {
            Obj::StorageClass(d) => *d,
            other => {
                return Err(format!(
                    "a storage id names {} where a storage class was expected",
                    other.kind()
                ))
            }
        };
        let key = match &self.objs[items[2]] {
            Obj::Str(s) => s.clone(),
            Obj::Int(v) => v.to_string(),
            other => return Err(format!("a storage key is {}", other.kind())),
        };
        let numel = nonneg(self.int(items[4], "storage size")?, "storage size")?;
        let view = match items.get(5).map(|&i| &self.objs[i]) {
            None | Some(Obj::None) => None,
            Some(Obj::Tuple(v)) if v.len() == 3 => {
                let offset = nonneg(self.int(v[1], "storage view")?, "storage view offset")?;
                let len = nonneg(self.int(v[2], "storage view")?, "storage view size")?;
                Some((offset, len))
            }
            Some(other) => return Err(format!("a storage view is {}", other.kind())),
        };
        Ok(StorageRef {
            dtype,
            key,
            numel,
            view,
        })
    }

    fn reduce(&self, f: Id, args: Id) -> Result<Obj, String> {
        let Obj::Callable(callable) = self.objs[f] else {
            return Err(format!("REDUCE calls {}", self.objs[f].kind()));
        };
        let args = self.tuple(args, "REDUCE arguments")?;
        self.apply(callable, &args)
    }

    fn apply(&self, callable: Callable, args: &[Id]) -> Result<Obj, String> {
        match callable {
            Callable::OrderedDict => match args {
                [] => Ok(Obj::Dict(Vec::new())),
                [items] => {
                    let mut pairs = Vec::new();
                    for item in self.tuple(*items, "OrderedDict items")? {
                        let kv = self.tuple(item, "OrderedDict item")?;
                        let [k, v] = kv[..] else {
                            return Err("OrderedDict item is not a pair".into());
                        };
                        pairs.push((k, v));
                    }
                    Ok(Obj::Dict(pairs))
                }
                _ => Err("OrderedDict with more than one argument".into()),
            },
            Callable::RebuildTensor | Callable::RebuildTensorV2 => {
                if args.len() < 4 {
                    return Err(format!(
                        "_rebuild_tensor with {} arguments, expected at least 4",
                        args.len()
                    ));
                }
                let Obj::Storage(storage) = &self.objs[args[0]] else {
                    return Err(format!(
                        "_rebuild_tensor of {}, expected a storage",
                        self.objs[args[0]].kind()
                    ));
                };
                let offset = self.int(args[1], "tensor offset")?;
                let size = self.ints(args[2], "tensor size")?;
                let stride = self.ints(args[3], "tensor stride")?;
                Ok(Obj::Tensor(TensorRef {
                    storage: storage.clone(),
                    offset,
                    size,
                    stride,
                }))
            }
            Callable::RebuildParameter | Callable::RebuildParameterWithState => {
                match args.first().map(|&i| &self.objs[i]) {
                    Some(t @ Obj::Tensor(_)) => Ok(t.clone()),
                    _ => Err("_rebuild_parameter of something that is not a tensor".into()),
                }
            }
            Callable::RebuildFromTypeV2 => {
                // (func, new_type, args, state): a plain tensor or parameter rebuilt by func.
                let [func, new_type, inner, ..] = args[..] else {
                    return Err("_rebuild_from_type_v2 with too few arguments".into());
                };
                if !matches!(self.objs[new_type], Obj::Callable(Callable::TensorType)) {
                    return Err("_rebuild_from_type_v2 of a tensor subclass".into());
                }
                let Obj::Callable(func) = self.objs[func] else {
                    return Err("_rebuild_from_type_v2 without a function".into());
                };
                if func == Callable::TensorType {
                    return Err("_rebuild_from_type_v2 calls a type".into());
                }
                let inner = self.tuple(inner, "_rebuild_from_type_v2 arguments")?;
                self.apply(func, &inner)
            }
            Callable::TensorType => Err("a tensor type is called directly".into()),
        }
    }
}

fn nonneg(v: i64, what: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("{what} is negative ({v})"))
}

fn pairs(items: &[Id], op: &str) -> Result<Vec<(Id, Id)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err(format!("{op}: an odd number of keys and values"));
    }
    Ok(items.chunks(2).map(|c| (c[0], c[1])).collect())
}

fn long(bytes: Vec<u8>) -> Obj {
    if bytes.is_empty() {
        return Obj::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut a = [if negative { 0xff } else { 0 }; 8];
        a[..bytes.len()].copy_from_slice(&bytes);
        return Obj::Int(i64::from_le_bytes(a));
    }
    Obj::BigInt(bytes)
}

/// The value a `GLOBAL module name` stands for, if it is allowed.
fn global(module: &str, name: &str) -> Result<Obj, String> {
    if module == "torch" {
        if let Some(d) = Dtype::from_storage_class(name) {
            return Ok(Obj::StorageClass(d));
        }
    }
    if let Some(c) = Callable::from_global(module, name) {
        return Ok(Obj::Callable(c));
    }
    Err(format!(
        "the checkpoint refers to `{module}.{name}`, which is not a tensor, a storage or a plain \
         container; umcl reads weights only and never runs code from a checkpoint (save \
         `model.state_dict()` alone, or convert it to safetensors)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_and_memo() {
        // pickle.dumps({"a": [1, -2, 300, 70000], "b": (True, None, 1.5)}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00eX\x01\x00\x00\x00bq\x03\x88N\x47\x3f\xf8\x00\x00\x00\x00\x00\x00\x87q\x04u.";
        let p = parse(data).unwrap();
        let Obj::Dict(items) = p.get(p.root) else {
            panic!("not a dict")
        };
        assert_eq!(p.str(items[0].0), Some("a"));
        let Obj::List(l) = p.get(items[0].1) else {
            panic!("not a list")
        };
        let ints: Vec<i64> = l.iter().map(|&i| p.int(i).unwrap()).collect();
        assert_eq!(ints, vec![1, -2, 300, 70000]);
        let Obj::Tuple(t) = p.get(items[1].1) else {
            panic!("not a tuple")
        };
        assert!(matches!(p.get(t[0]), Obj::Bool(true)));
        assert!(matches!(p.get(t[1]), Obj::None));
        assert!(matches!(p.get(t[2]), Obj::Float));
        assert_eq!(p.len, data.len());
    }

    #[test]
    fn a_foreign_global_is_refused_by_name() {
        // pickle.dumps(os.system) under protocol 2: GLOBAL 'posix system'.
        let err = parse(b"\x80\x02cposix\nsystem\nq\x00.").err().unwrap();
        assert!(err.contains("`posix.system`"), "{err}");
        assert!(err.contains("never runs code"), "{err}");
    }

    #[test]
    fn truncated_and_malformed_pickles_are_errors() {
        assert!(parse(b"\x80\x02}q\x00(X\x05\x00\x00\x00ab")
            .err()
            .unwrap()
            .contains("truncated"));
        assert!(parse(b"\x80\x02h\x07.")
            .err()
            .unwrap()
            .contains("memo entry 7"));
        assert!(parse(b"\x80\x02.").err().unwrap().contains("STOP"));
        assert!(parse(b"\x80\x02\xff").err().unwrap().contains("0xff"));
        assert!(parse(b"\x80\x00N.").err().unwrap().contains("protocol 0"));
        assert!(parse(b"").err().unwrap().contains("truncated"));
    }

    #[test]
    fn long_integers_keep_sign_and_width() {
        assert!(matches!(long(vec![0xff]), Obj::Int(-1)));
        assert!(matches!(long(vec![0x00, 0x01]), Obj::Int(256)));
        assert!(matches!(long(vec![1; 10]), Obj::BigInt(b) if b.len() == 10));
    }
}
