//! A pickle reader that only understands state dicts, like
//! `torch.load(weights_only=True)`: it knows the handful of globals a saved
//! `state_dict()` refers to (an `OrderedDict`, torch's tensor and parameter
//! rebuilders, the storage types) and refuses every other one by name. It
//! never calls anything: "calling" an allowed global builds a plain value.

use std::collections::BTreeMap;

/// Element types of a storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    U8,
    I8,
    Bool,
}

impl StorageType {
    fn from_torch(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ByteStorage" => Self::U8,
            "CharStorage" => Self::I8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::U8 | Self::I8 | Self::Bool => 1,
        }
    }
}

/// A tensor as the pickle describes it: a view into a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// The storage's key (the file name under `data/` in a zip checkpoint).
    pub storage: String,
    pub dtype: StorageType,
    /// Offset into the storage, in elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

/// The globals a state dict may name.
#[derive(Clone, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(StorageType),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensor),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch", storage) => StorageType::from_torch(storage).map(Global::Storage),
            _ => None,
        }
    }
}

/// A value on the pickle machine's stack.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Tensor(TensorRef),
    /// A storage reference from a persistent id: (type, key).
    Storage(StorageType, String),
    Global(GlobalValue),
    Mark,
}

/// An allowed global, opaque outside this module.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalValue(Global);

/// Why a pickle was refused or could not be read.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("refused: the pickle refers to `{0}`, which a state dict never needs (only OrderedDict, torch tensors and storages are allowed)")]
    Forbidden(String),
    #[error("unsupported pickle opcode 0x{0:02x} at byte {1}")]
    Opcode(u8, usize),
    #[error("the pickle ends early (byte {0})")]
    Truncated(usize),
    #[error("malformed pickle at byte {0}: {1}")]
    Malformed(usize, String),
}

/// Reads a pickle, returning the value `STOP` leaves on the stack.
pub fn read(bytes: &[u8]) -> Result<Value, PickleError> {
    read_prefix(bytes).map(|(value, _)| value)
}

/// Reads the pickle at the start of `bytes`, returning its value and the
/// number of bytes it took: torch's legacy format writes several pickles and
/// raw storages back to back.
pub fn read_prefix(bytes: &[u8]) -> Result<(Value, usize), PickleError> {
    let mut machine = Machine {
        bytes,
        pos: 0,
        stack: Vec::new(),
        memo: BTreeMap::new(),
    };
    let value = machine.run()?;
    Ok((value, machine.pos))
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: BTreeMap<u32, Value>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(PickleError::Truncated(self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.pos))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn bad(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed(self.pos, what.into())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        self.stack.pop().ok_or_else(|| self.bad("empty stack"))
    }

    /// Everything above the topmost mark, removing the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let at = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or_else(|| self.bad("no mark"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn string(&mut self, n: usize) -> Result<Value, PickleError> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn global(&self, module: &str, name: &str) -> Result<Value, PickleError> {
        Global::resolve(module, name)
            .map(|g| Value::Global(GlobalValue(g)))
            .ok_or_else(|| PickleError::Forbidden(format!("{module}.{name}")))
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let b = self.take(2)?;
                    let v = u16::from_le_bytes([b[0], b[1]]);
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    if n > 8 {
                        return Err(self.bad("integer wider than 64 bits"));
                    }
                    let b = self.take(n)?;
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                        [0xff; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(b);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'C' => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.bad("STACK_GLOBAL needs two strings"));
                    };
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                b'q' => {
                    let i = u32::from(self.u8()?);
                    self.memoize(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memoize(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memoize(i)?;
                }
                b'h' => {
                    let i = u32::from(self.u8()?);
                    self.recall(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.recall(i)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(self.bad("tuple from an empty stack"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.stack.last_mut() {
                        Some(Value::List(l)) => l.push(v),
                        _ => return Err(self.bad("APPEND to a non-list")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return Err(self.bad("APPENDS to a non-list")),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.stack.last_mut() {
                        Some(Value::Dict(d)) => d.push((k, v)),
                        _ => return Err(self.bad("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.bad("SETITEMS with an odd number of items"));
                    }
                    let mut it = items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    match self.stack.last_mut() {
                        Some(Value::Dict(d)) => d.extend(pairs),
                        _ => return Err(self.bad("SETITEMS on a non-dict")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD: an OrderedDict's `_metadata` attribute; dropped.
                    let _state = self.pop()?;
                    if !matches!(self.stack.last(), Some(Value::Dict(_))) {
                        return Err(self.bad("BUILD on something other than a dict"));
                    }
                }
                _ => return Err(PickleError::Opcode(op, at)),
            }
        }
    }

    fn memoize(&mut self, i: u32) -> Result<(), PickleError> {
        let top = self
            .stack
            .last()
            .ok_or_else(|| self.bad("memo of nothing"))?;
        self.memo.insert(i, top.clone());
        Ok(())
    }

    fn recall(&mut self, i: u32) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&i)
            .cloned()
            .ok_or_else(|| self.bad(format!("memo {i} unset")))?;
        self.stack.push(v);
        Ok(())
    }

    /// `('storage', <storage type>, key, location, numel[, view_metadata])`
    /// → a storage. Legacy files may describe a view of a storage in the
    /// sixth item; torch stopped writing those long ago, and they are refused.
    fn persistent(&self, pid: Value) -> Result<Value, PickleError> {
        let Value::Tuple(items) = pid else {
            return Err(self.bad("persistent id is not a tuple"));
        };
        if items.get(5).is_some_and(|v| *v != Value::None) {
            return Err(self.bad("storage views (view_metadata) are not supported"));
        }
        match items.as_slice() {
            [Value::Str(tag), Value::Global(GlobalValue(Global::Storage(t))), Value::Str(key), ..]
                if tag == "storage" =>
            {
                Ok(Value::Storage(*t, key.clone()))
            }
            _ => Err(self.bad("persistent id is not a torch storage")),
        }
    }

    fn reduce(&self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(GlobalValue(g)) = callable else {
            return Err(PickleError::Forbidden(format!("calling {callable:?}")));
        };
        let Value::Tuple(args) = args else {
            return Err(self.bad("arguments are not a tuple"));
        };
        match g {
            Global::OrderedDict => Ok(Value::Dict(Vec::new())),
            Global::RebuildParameter => match args.into_iter().next() {
                Some(t @ Value::Tensor(_)) => Ok(t),
                _ => Err(self.bad("_rebuild_parameter without a tensor")),
            },
            Global::RebuildTensor => {
                let ints = |v: &Value| -> Option<Vec<usize>> {
                    match v {
                        Value::Tuple(xs) => xs
                            .iter()
                            .map(|x| match x {
                                Value::Int(i) => usize::try_from(*i).ok(),
                                _ => None,
                            })
                            .collect(),
                        _ => None,
                    }
                };
                match args.as_slice() {
                    [Value::Storage(dtype, key), Value::Int(offset), shape, strides, ..] => {
                        let (Some(shape), Some(strides)) = (ints(shape), ints(strides)) else {
                            return Err(self.bad("tensor shape or strides are not integers"));
                        };
                        if shape.len() != strides.len() || *offset < 0 {
                            return Err(self.bad("tensor shape and strides disagree"));
                        }
                        Ok(Value::Tensor(TensorRef {
                            storage: key.clone(),
                            dtype: *dtype,
                            offset: *offset as usize,
                            shape,
                            strides,
                        }))
                    }
                    _ => Err(self.bad("_rebuild_tensor_v2 with unexpected arguments")),
                }
            }
            Global::Storage(_) => Err(PickleError::Forbidden("calling a storage type".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_to_anything_else_is_refused_by_name() {
        // pickle.dumps of an object whose __reduce__ is (os.system, ("echo pwned",)), protocol 2.
        let evil = b"\x80\x02cposix\nsystem\nq\x00X\n\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
        assert_eq!(
            read(evil),
            Err(PickleError::Forbidden("posix.system".into()))
        );
        let builtins = b"\x80\x02c__builtin__\neval\nq\x00.";
        assert!(matches!(read(builtins), Err(PickleError::Forbidden(_))));
        // STACK_GLOBAL (protocol 4) is checked the same way.
        let stacked = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94.";
        assert_eq!(
            read(stacked),
            Err(PickleError::Forbidden("os.system".into()))
        );
    }

    #[test]
    fn plain_values_and_truncation() {
        // {"a": [1, 2.5, True, None]} at protocol 2.
        let doc = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00\x88Nes.";
        assert_eq!(
            read(doc),
            Ok(Value::Dict(vec![(
                Value::Str("a".into()),
                Value::List(vec![
                    Value::Int(1),
                    Value::Float(2.5),
                    Value::Bool(true),
                    Value::None
                ])
            )]))
        );
        assert!(matches!(read(&doc[..10]), Err(PickleError::Truncated(_))));
    }
}
