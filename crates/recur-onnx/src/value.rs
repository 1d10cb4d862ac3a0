//! Tensors flowing through a graph: a shape, an element type and the values.

use crate::error::{Error, Result};
use crate::proto::data_type as dt;

/// The most elements any tensor may have (2^28: 1 GiB of f32). Every shape read from a file
/// or computed by an operator is checked against it before anything is allocated.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// Element types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    U16,
    U32,
    U64,
    Bool,
}

impl DType {
    /// From `TensorProto.DataType`; `None` for types recur does not handle (strings, f16, ...).
    pub fn from_onnx(t: i32) -> Option<DType> {
        Some(match t {
            dt::FLOAT => DType::F32,
            dt::DOUBLE => DType::F64,
            dt::INT64 => DType::I64,
            dt::INT32 => DType::I32,
            dt::INT16 => DType::I16,
            dt::INT8 => DType::I8,
            dt::UINT8 => DType::U8,
            dt::UINT16 => DType::U16,
            dt::UINT32 => DType::U32,
            dt::UINT64 => DType::U64,
            dt::BOOL => DType::Bool,
            _ => return None,
        })
    }
    /// The `TensorProto.DataType` number.
    pub fn onnx(self) -> i32 {
        match self {
            DType::F32 => dt::FLOAT,
            DType::F64 => dt::DOUBLE,
            DType::I64 => dt::INT64,
            DType::I32 => dt::INT32,
            DType::I16 => dt::INT16,
            DType::I8 => dt::INT8,
            DType::U8 => dt::UINT8,
            DType::U16 => dt::UINT16,
            DType::U32 => dt::UINT32,
            DType::U64 => dt::UINT64,
            DType::Bool => dt::BOOL,
        }
    }
    /// ONNX's name of the type (`float`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float",
            DType::F64 => "double",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::Bool => "bool",
        }
    }
    /// f32 or f64.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }
    /// Wraps an integer to this type's range, as a cast does.
    pub fn wrap(self, v: i64) -> i64 {
        match self {
            DType::I32 => v as i32 as i64,
            DType::I16 => v as i16 as i64,
            DType::I8 => v as i8 as i64,
            DType::U8 => v as u8 as i64,
            DType::U16 => v as u16 as i64,
            DType::U32 => v as u32 as i64,
            DType::Bool => (v != 0) as i64,
            _ => v,
        }
    }
}

/// The values, row-major. Every integer type (and bool) is held as i64.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Int(Vec<i64>),
}

/// A tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
}

thread_local! {
    static LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(MAX_ELEMENTS) };
}

/// The element limit in force on this thread ([`MAX_ELEMENTS`] unless a model run lowered it).
pub fn element_limit() -> usize {
    LIMIT.with(|l| l.get())
}

/// Sets the element limit of this thread until the guard is dropped.
pub(crate) fn limit_elements(n: usize) -> LimitGuard {
    let old = LIMIT.with(|l| l.replace(n.min(MAX_ELEMENTS)));
    LimitGuard(old)
}

pub(crate) struct LimitGuard(usize);

impl Drop for LimitGuard {
    fn drop(&mut self) {
        LIMIT.with(|l| l.set(self.0));
    }
}

/// The number of elements of `shape`, checked against the element limit (`what` names it in
/// the error) before anything of that size is allocated.
pub fn numel(shape: &[usize], what: &str) -> Result<usize> {
    let max = element_limit();
    let mut n: usize = 1;
    for &d in shape {
        n = n.checked_mul(d).filter(|&n| n <= max).ok_or_else(|| {
            Error::Invalid(format!(
                "{what}: shape {} has more than {max} elements",
                fmt_shape(shape)
            ))
        })?;
    }
    Ok(n)
}

/// `[2, 3]` → `(2, 3)`
pub fn fmt_shape(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

impl Value {
    /// An f32 tensor (the length must match the shape).
    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Value {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        Value {
            dtype: DType::F32,
            shape,
            data: Data::F32(v),
        }
    }
    /// An f64 tensor.
    pub fn f64(shape: Vec<usize>, v: Vec<f64>) -> Value {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        Value {
            dtype: DType::F64,
            shape,
            data: Data::F64(v),
        }
    }
    /// An integer tensor of type `dtype` (values wrapped to its range).
    pub fn int(dtype: DType, shape: Vec<usize>, v: Vec<i64>) -> Value {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        let v = if dtype == DType::I64 {
            v
        } else {
            v.into_iter().map(|x| dtype.wrap(x)).collect()
        };
        Value {
            dtype,
            shape,
            data: Data::Int(v),
        }
    }
    /// A float tensor of type `dtype` (F32 or F64) from f64 values.
    pub fn float(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Value {
        match dtype {
            DType::F64 => Value::f64(shape, v),
            _ => Value::f32(shape, v.into_iter().map(|x| x as f32).collect()),
        }
    }
    /// A tensor of type `dtype` and `shape` with zeros (false for bool).
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Value {
        let n = shape.iter().product();
        match dtype {
            DType::F32 => Value::f32(shape, vec![0.0; n]),
            DType::F64 => Value::f64(shape, vec![0.0; n]),
            t => Value::int(t, shape, vec![0; n]),
        }
    }
    /// The tensors `parts` (all of the first one's type and shape) one after the other, as a
    /// tensor of `shape` (whose element count is the sum of theirs).
    pub fn stack(shape: Vec<usize>, parts: &[Value]) -> Value {
        let dtype = parts.first().map_or(DType::F32, |p| p.dtype);
        macro_rules! cat {
            ($var:ident) => {
                Data::$var(
                    parts
                        .iter()
                        .flat_map(|p| match &p.data {
                            Data::$var(d) => d.as_slice(),
                            _ => &[],
                        })
                        .copied()
                        .collect(),
                )
            };
        }
        let data = match parts.first().map(|p| &p.data) {
            Some(Data::F64(_)) => cat!(F64),
            Some(Data::Int(_)) => cat!(Int),
            _ => cat!(F32),
        };
        Value { dtype, shape, data }
    }
    /// The element count.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::Int(v) => v.len(),
        }
    }
    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values as i64 (an error for floats).
    pub fn ints(&self, what: &str) -> Result<&[i64]> {
        match &self.data {
            Data::Int(v) => Ok(v),
            _ => Err(Error::Invalid(format!(
                "{what}: expected an integer tensor, got {}",
                self.dtype.name()
            ))),
        }
    }
    /// The values converted to f64, whatever the type.
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
            Data::Int(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
    /// The values converted to i64, whatever the type (floats truncated toward zero, as Cast).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::F64(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Int(v) => v.clone(),
        }
    }
    /// The same values converted to `to` (ONNX Cast semantics for the types recur holds).
    pub fn cast(&self, to: DType) -> Value {
        if to == self.dtype {
            return self.clone();
        }
        let shape = self.shape.clone();
        match to {
            DType::F32 => Value::f32(
                shape,
                match &self.data {
                    Data::F32(v) => v.clone(),
                    Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
                    Data::Int(v) => v.iter().map(|&x| x as f32).collect(),
                },
            ),
            DType::F64 => Value::f64(shape, self.to_f64()),
            DType::Bool => {
                let v = match &self.data {
                    Data::F32(v) => v.iter().map(|&x| (x != 0.0) as i64).collect(),
                    Data::F64(v) => v.iter().map(|&x| (x != 0.0) as i64).collect(),
                    Data::Int(v) => v.iter().map(|&x| (x != 0) as i64).collect(),
                };
                Value::int(DType::Bool, shape, v)
            }
            _ => Value::int(to, shape, self.to_i64()),
        }
    }
}
