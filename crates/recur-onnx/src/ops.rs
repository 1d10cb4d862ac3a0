//! The glue operators that exporters write around recurrent nodes.

use crate::error::{Error, Result};
use crate::reader::Node;
use crate::value::{fmt_shape, numel, DType, Data, Value};
use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};
use std::sync::Arc;

/// Every operator besides RNN, GRU and LSTM that recur runs.
pub const SUPPORTED: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "Cast",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Div",
    "Dropout",
    "Equal",
    "Exp",
    "Expand",
    "Flatten",
    "Gather",
    "Gemm",
    "Greater",
    "Identity",
    "Less",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Range",
    "ReduceMean",
    "ReduceProd",
    "ReduceSum",
    "Relu",
    "Reshape",
    "ReverseSequence",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// Whether `op` is one of [`SUPPORTED`].
pub fn supported(op: &str) -> bool {
    SUPPORTED.contains(&op)
}

type Args<'a> = &'a [Option<Arc<Value>>];

fn err(node: &Node, m: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {m}", node.label()))
}

fn arg<'a>(node: &Node, args: Args<'a>, i: usize) -> Result<&'a Value> {
    args.get(i)
        .and_then(|a| a.as_deref())
        .ok_or_else(|| err(node, format!("input {i} is required")))
}

fn opt<'a>(args: Args<'a>, i: usize) -> Option<&'a Value> {
    args.get(i).and_then(|a| a.as_deref())
}

/// Normalizes a possibly negative axis for rank `r`.
fn axis(node: &Node, a: i64, r: usize) -> Result<usize> {
    let ai = if a < 0 { a + r as i64 } else { a };
    if ai < 0 || ai >= r as i64 {
        return Err(err(node, format!("axis {a} is out of range for rank {r}")));
    }
    Ok(ai as usize)
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Runs one node; returns its outputs in order (None for an output it does not produce).
pub fn run(node: &Node, args: Args<'_>, opset: i64) -> Result<Vec<Option<Value>>> {
    let one = |v: Value| Ok(vec![Some(v)]);
    match node.op.as_str() {
        "Identity" => one(arg(node, args, 0)?.clone()),
        "Dropout" => {
            // Inference: the identity; the mask output is all true.
            let x = arg(node, args, 0)?.clone();
            let mask = Value::int(DType::Bool, x.shape.clone(), vec![1; x.len()]);
            Ok(vec![Some(x), Some(mask)])
        }
        "Constant" => one(constant(node)?),
        "Cast" => {
            let to = node
                .int("to")?
                .ok_or_else(|| err(node, "attribute 'to' is required"))?;
            let t = DType::from_onnx(to as i32).ok_or_else(|| {
                Error::Unsupported(format!(
                    "{}: cast to type {to} is not supported",
                    node.label()
                ))
            })?;
            one(arg(node, args, 0)?.cast(t))
        }
        "Shape" => {
            let x = arg(node, args, 0)?;
            let r = x.shape.len() as i64;
            let clampi = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) } as usize;
            let start = clampi(node.int("start")?.unwrap_or(0));
            let end = clampi(node.int("end")?.unwrap_or(r));
            let dims: Vec<i64> = x.shape[start..end.max(start)]
                .iter()
                .map(|&d| d as i64)
                .collect();
            one(Value::int(DType::I64, vec![dims.len()], dims))
        }
        "ConstantOfShape" => {
            let s = shape_arg(node, arg(node, args, 0)?)?;
            let n = numel(&s, &node.label())?;
            let v = match node.tensor("value")? {
                None => Value::f32(s, vec![0.0; n]),
                Some(t) => {
                    if t.len() != 1 {
                        return Err(err(node, "attribute 'value' must hold one element"));
                    }
                    match &t.data {
                        Data::F32(d) => Value::f32(s, vec![d[0]; n]),
                        Data::F64(d) => Value::f64(s, vec![d[0]; n]),
                        Data::Int(d) => Value::int(t.dtype, s, vec![d[0]; n]),
                    }
                }
            };
            one(v)
        }
        "Relu" | "Tanh" | "Sigmoid" | "Neg" | "Exp" | "Log" | "Sqrt" | "Abs" => {
            let x = arg(node, args, 0)?;
            let f: fn(f64) -> f64 = match node.op.as_str() {
                "Relu" => |v| if v > 0.0 { v } else { 0.0 },
                "Tanh" => f64::tanh,
                "Sigmoid" => |v| 1.0 / (1.0 + (-v).exp()),
                "Neg" => |v| -v,
                "Exp" => f64::exp,
                "Log" => f64::ln,
                "Sqrt" => f64::sqrt,
                _ => f64::abs,
            };
            one(match &x.data {
                Data::F32(d) => Value::f32(
                    x.shape.clone(),
                    d.iter().map(|&v| f(v as f64) as f32).collect(),
                ),
                Data::F64(d) => Value::f64(x.shape.clone(), d.iter().map(|&v| f(v)).collect()),
                Data::Int(d) => match node.op.as_str() {
                    "Neg" => Value::int(x.dtype, x.shape.clone(), d.iter().map(|&v| -v).collect()),
                    "Abs" => Value::int(
                        x.dtype,
                        x.shape.clone(),
                        d.iter().map(|&v| v.abs()).collect(),
                    ),
                    "Relu" => Value::int(
                        x.dtype,
                        x.shape.clone(),
                        d.iter().map(|&v| v.max(0)).collect(),
                    ),
                    _ => {
                        return Err(err(
                            node,
                            format!("input has type {}, expected a float type", x.dtype.name()),
                        ))
                    }
                },
            })
        }
        "Not" => {
            let x = arg(node, args, 0)?;
            let d = x.ints("Not")?;
            one(Value::int(
                DType::Bool,
                x.shape.clone(),
                d.iter().map(|&v| (v == 0) as i64).collect(),
            ))
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = (arg(node, args, 0)?, arg(node, args, 1)?);
            let op = node.op.as_str();
            // One monomorphized loop per operation.
            match op {
                "Add" => binary(node, a, b, |x, y| x + y, |x, y| Ok(x.wrapping_add(y))),
                "Sub" => binary(node, a, b, |x, y| x - y, |x, y| Ok(x.wrapping_sub(y))),
                "Mul" => binary(node, a, b, |x, y| x * y, |x, y| Ok(x.wrapping_mul(y))),
                _ => binary(
                    node,
                    a,
                    b,
                    |x, y| x / y,
                    |x, y| x.checked_div(y).ok_or("integer division by zero"),
                ),
            }
            .map(|v| vec![Some(v)])
        }
        "Equal" | "Less" | "Greater" => {
            let (a, b) = (arg(node, args, 0)?, arg(node, args, 1)?);
            let op = node.op.as_str();
            let cmp = |o: std::cmp::Ordering| match op {
                "Equal" => o == std::cmp::Ordering::Equal,
                "Less" => o == std::cmp::Ordering::Less,
                _ => o == std::cmp::Ordering::Greater,
            };
            let v = binary(
                node,
                a,
                b,
                |x, y| x.partial_cmp(&y).map_or(0.0, |o| cmp(o) as i64 as f64),
                |x, y| Ok(cmp(x.cmp(&y)) as i64),
            )?;
            one(Value::int(DType::Bool, v.shape.clone(), v.to_i64()))
        }
        "And" | "Or" | "Xor" => {
            let (a, b) = (arg(node, args, 0)?, arg(node, args, 1)?);
            for v in [a, b] {
                if v.dtype != DType::Bool {
                    return Err(err(
                        node,
                        format!("inputs must be bool tensors, got {}", v.dtype.name()),
                    ));
                }
            }
            let f: fn(bool, bool) -> bool = match node.op.as_str() {
                "And" => |x, y| x && y,
                "Or" => |x, y| x || y,
                _ => |x, y| x != y,
            };
            let v = binary(node, a, b, |_, _| 0.0, |x, y| Ok(f(x != 0, y != 0) as i64))?;
            one(Value::int(DType::Bool, v.shape.clone(), v.to_i64()))
        }
        "ReverseSequence" => one(reverse_sequence(
            node,
            arg(node, args, 0)?,
            arg(node, args, 1)?,
        )?),
        "Where" => {
            let (c, a, b) = (
                arg(node, args, 0)?,
                arg(node, args, 1)?,
                arg(node, args, 2)?,
            );
            where_op(node, c, a, b).map(|v| vec![Some(v)])
        }
        "MatMul" => one(matmul_op(node, arg(node, args, 0)?, arg(node, args, 1)?)?),
        "Gemm" => one(gemm_op(
            node,
            arg(node, args, 0)?,
            arg(node, args, 1)?,
            opt(args, 2),
        )?),
        "Gather" => one(gather(node, arg(node, args, 0)?, arg(node, args, 1)?)?),
        "Transpose" => {
            let x = arg(node, args, 0)?;
            let r = x.shape.len();
            let perm: Vec<usize> = match node.ints("perm")? {
                None => (0..r).rev().collect(),
                Some(p) => p.iter().map(|&a| axis(node, a, r)).collect::<Result<_>>()?,
            };
            let mut seen = vec![false; r];
            if perm.len() != r || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
                return Err(err(
                    node,
                    format!("perm {perm:?} is not a permutation of {r} axes"),
                ));
            }
            one(transpose(x, &perm))
        }
        "Squeeze" | "Unsqueeze" => {
            let x = arg(node, args, 0)?;
            let axes: Option<Vec<i64>> = if opset >= 13 {
                opt(args, 1).map(|a| a.to_i64())
            } else {
                node.ints("axes")?.map(|a| a.to_vec())
            };
            let mut shape = x.shape.clone();
            if node.op == "Squeeze" {
                match axes {
                    None => shape.retain(|&d| d != 1),
                    Some(ax) => {
                        let mut ax: Vec<usize> = ax
                            .iter()
                            .map(|&a| axis(node, a, shape.len()))
                            .collect::<Result<_>>()?;
                        ax.sort_unstable();
                        ax.dedup();
                        for &a in ax.iter().rev() {
                            if shape[a] != 1 {
                                return Err(err(
                                    node,
                                    format!(
                                        "cannot squeeze axis {a} of size {} (shape {})",
                                        shape[a],
                                        fmt_shape(&x.shape)
                                    ),
                                ));
                            }
                            shape.remove(a);
                        }
                    }
                }
            } else {
                let ax = axes.ok_or_else(|| err(node, "axes are required"))?;
                let r = shape.len() + ax.len();
                let mut ax: Vec<usize> = ax
                    .iter()
                    .map(|&a| axis(node, a, r))
                    .collect::<Result<_>>()?;
                ax.sort_unstable();
                if ax.windows(2).any(|w| w[0] == w[1]) {
                    return Err(err(node, "repeated axis"));
                }
                for a in ax {
                    shape.insert(a, 1);
                }
            }
            one(Value { shape, ..x.clone() })
        }
        "Flatten" => {
            let x = arg(node, args, 0)?;
            let r = x.shape.len();
            let a = node.int("axis")?.unwrap_or(1);
            let a = if a < 0 { a + r as i64 } else { a };
            if a < 0 || a > r as i64 {
                return Err(err(node, format!("axis {a} out of range for rank {r}")));
            }
            let a = a as usize;
            let shape = vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()];
            one(Value { shape, ..x.clone() })
        }
        "Reshape" => {
            let x = arg(node, args, 0)?;
            let spec = if opset >= 5 {
                arg(node, args, 1)?.to_i64()
            } else {
                node.ints("shape")?
                    .ok_or_else(|| err(node, "attribute 'shape' is required"))?
                    .to_vec()
            };
            let allowzero = node.int("allowzero")?.unwrap_or(0) != 0;
            let mut shape = Vec::with_capacity(spec.len());
            let mut infer = None;
            for (k, &s) in spec.iter().enumerate() {
                match s {
                    -1 if infer.is_none() => {
                        infer = Some(k);
                        shape.push(1);
                    }
                    0 if !allowzero => shape.push(*x.shape.get(k).ok_or_else(|| err(node, format!("shape[{k}] = 0 copies a dimension the input (rank {}) does not have", x.shape.len())))?),
                    s if s >= 0 => shape.push(s as usize),
                    _ => return Err(err(node, format!("invalid shape {spec:?}"))),
                }
            }
            let n = x.len();
            if let Some(k) = infer {
                let rest: usize = shape
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != k)
                    .map(|(_, &d)| d)
                    .product();
                if rest == 0 || n % rest != 0 {
                    return Err(err(
                        node,
                        format!("cannot reshape {} into {spec:?}", fmt_shape(&x.shape)),
                    ));
                }
                shape[k] = n / rest;
            }
            if shape.iter().product::<usize>() != n {
                return Err(err(
                    node,
                    format!(
                        "cannot reshape {} ({n} elements) into {}",
                        fmt_shape(&x.shape),
                        fmt_shape(&shape)
                    ),
                ));
            }
            one(Value { shape, ..x.clone() })
        }
        "Concat" => {
            let vals: Vec<&Value> = args.iter().filter_map(|a| a.as_deref()).collect();
            one(concat(node, &vals)?)
        }
        "Split" => split(node, args, opset),
        "Slice" => one(slice(node, args, opset)?),
        "Expand" => {
            let x = arg(node, args, 0)?;
            let s = shape_arg(node, arg(node, args, 1)?)?;
            let out = broadcast_shape(node, &x.shape, &s)?;
            one(broadcast_to(node, x, &out)?)
        }
        "Range" => {
            let (s, l, d) = (
                arg(node, args, 0)?,
                arg(node, args, 1)?,
                arg(node, args, 2)?,
            );
            let (s0, l0, d0) = (s.to_f64()[0], l.to_f64()[0], d.to_f64()[0]);
            if d0 == 0.0 {
                return Err(err(node, "delta is 0"));
            }
            let n = ((l0 - s0) / d0).ceil().max(0.0);
            if n > crate::value::MAX_ELEMENTS as f64 {
                return Err(err(node, "too many elements"));
            }
            let n = n as usize;
            let v: Vec<f64> = (0..n).map(|k| s0 + k as f64 * d0).collect();
            one(match s.dtype {
                t if t.is_float() => Value::float(t, vec![n], v),
                t => Value::int(t, vec![n], v.iter().map(|&x| x as i64).collect()),
            })
        }
        "Softmax" | "LogSoftmax" => one(softmax(node, arg(node, args, 0)?, opset)?),
        "ReduceSum" | "ReduceMean" | "ReduceProd" => one(reduce(node, args, opset)?),
        other => Err(Error::Unsupported(format!(
            "{}: operator {other} is not supported",
            node.label()
        ))),
    }
}

fn constant(node: &Node) -> Result<Value> {
    if let Some(t) = node.tensor("value")? {
        return Ok(t.clone());
    }
    if let Some(f) = node.float("value_float")? {
        return Ok(Value::f32(vec![], vec![f]));
    }
    if let Some(f) = node.floats("value_floats")? {
        return Ok(Value::f32(vec![f.len()], f.to_vec()));
    }
    if let Some(i) = node.int("value_int")? {
        return Ok(Value::int(DType::I64, vec![], vec![i]));
    }
    if let Some(i) = node.ints("value_ints")? {
        return Ok(Value::int(DType::I64, vec![i.len()], i.to_vec()));
    }
    Err(Error::Unsupported(format!(
        "{}: a Constant needs one of value, value_float(s), value_int(s) (sparse and string values are not supported)",
        node.label()
    )))
}

fn shape_arg(node: &Node, v: &Value) -> Result<Vec<usize>> {
    let d = v.ints("shape").map_err(|e| err(node, e))?;
    let s: Vec<usize> = d
        .iter()
        .map(|&x| {
            usize::try_from(x).map_err(|_| err(node, format!("negative dimension {x} in shape")))
        })
        .collect::<Result<_>>()?;
    numel(&s, &node.label())?;
    Ok(s)
}

fn broadcast_shape(node: &Node, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(err(
                node,
                format!(
                    "shapes {} and {} do not broadcast",
                    fmt_shape(a),
                    fmt_shape(b)
                ),
            ));
        };
    }
    numel(&out, &node.label())?;
    Ok(out)
}

/// For each output element, the flat index into an input of `shape` broadcast to `out`.
fn bcast_index(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let r = out.len();
    let off = r - shape.len();
    let m: usize = shape.iter().product();
    if m == n {
        // The same elements (only leading 1s differ): the identity.
        return (0..n).collect();
    }
    // An input that matches the output's trailing dimensions (a bias): repeats every m.
    let suffix = shape
        .iter()
        .skip_while(|&&d| d == 1)
        .copied()
        .collect::<Vec<_>>();
    if !suffix.is_empty() && out.ends_with(&suffix) && m > 0 {
        return (0..n).map(|k| k % m).collect();
    }
    let st = strides(shape);
    let mut idx = vec![0usize; n];
    let mut coord = vec![0usize; r];
    for slot in idx.iter_mut() {
        let mut f = 0;
        for (k, &c) in coord.iter().enumerate().skip(off) {
            if shape[k - off] != 1 {
                f += c * st[k - off];
            }
        }
        *slot = f;
        for k in (0..r).rev() {
            coord[k] += 1;
            if coord[k] < out[k] {
                break;
            }
            coord[k] = 0;
        }
    }
    idx
}

fn broadcast_to(node: &Node, x: &Value, out: &[usize]) -> Result<Value> {
    numel(out, &node.label())?;
    let idx = bcast_index(&x.shape, out);
    Ok(gather_flat(x, out.to_vec(), &idx))
}

fn gather_flat(x: &Value, shape: Vec<usize>, idx: &[usize]) -> Value {
    let data = match &x.data {
        Data::F32(d) => Data::F32(idx.iter().map(|&i| d[i]).collect()),
        Data::F64(d) => Data::F64(idx.iter().map(|&i| d[i]).collect()),
        Data::Int(d) => Data::Int(idx.iter().map(|&i| d[i]).collect()),
    };
    Value {
        dtype: x.dtype,
        shape,
        data,
    }
}

fn binary(
    node: &Node,
    a: &Value,
    b: &Value,
    f: impl Fn(f64, f64) -> f64,
    fi: impl Fn(i64, i64) -> std::result::Result<i64, &'static str>,
) -> Result<Value> {
    if a.dtype != b.dtype {
        return Err(err(
            node,
            format!(
                "inputs have types {} and {}; they must be the same",
                a.dtype.name(),
                b.dtype.name()
            ),
        ));
    }
    let out = broadcast_shape(node, &a.shape, &b.shape)?;
    // The common case of f32 tensors where the first has the output's elements and the
    // second is the same size or repeats along the leading dimensions (a bias): no index
    // vectors.
    if let (Data::F32(x), Data::F32(y)) = (&a.data, &b.data) {
        let n = x.len();
        let m = y.len();
        let tail = b
            .shape
            .iter()
            .skip_while(|&&d| d == 1)
            .copied()
            .collect::<Vec<_>>();
        if n == out.iter().product::<usize>() && m > 0 && (m == n || out.ends_with(&tail)) {
            let v: Vec<f32> = x
                .chunks(m)
                .flat_map(|c| c.iter().zip(y).map(|(&p, &q)| f(p as f64, q as f64) as f32))
                .collect();
            return Ok(Value::f32(out, v));
        }
        // The same with the roles swapped (`Add(bias, x)`, as exporters write it).
        let tail = a
            .shape
            .iter()
            .skip_while(|&&d| d == 1)
            .copied()
            .collect::<Vec<_>>();
        if m == out.iter().product::<usize>() && n > 0 && out.ends_with(&tail) {
            let v: Vec<f32> = y
                .chunks(n)
                .flat_map(|c| x.iter().zip(c).map(|(&p, &q)| f(p as f64, q as f64) as f32))
                .collect();
            return Ok(Value::f32(out, v));
        }
    }
    let (ia, ib) = (bcast_index(&a.shape, &out), bcast_index(&b.shape, &out));
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => Data::F32(
            ia.iter()
                .zip(&ib)
                // +, -, * and / of two f32 values done in f64 and rounded once are exactly the
                // f32 operations (f64 has more than twice f32's precision).
                .map(|(&i, &j)| f(x[i] as f64, y[j] as f64) as f32)
                .collect(),
        ),
        (Data::F64(x), Data::F64(y)) => {
            Data::F64(ia.iter().zip(&ib).map(|(&i, &j)| f(x[i], y[j])).collect())
        }
        (Data::Int(x), Data::Int(y)) => Data::Int(
            ia.iter()
                .zip(&ib)
                .map(|(&i, &j)| fi(x[i], y[j]).map_err(|m| err(node, m)))
                .collect::<Result<_>>()?,
        ),
        _ => unreachable!("same dtype"),
    };
    let v = Value {
        dtype: a.dtype,
        shape: out,
        data,
    };
    Ok(if matches!(v.data, Data::Int(_)) {
        v.cast(a.dtype)
    } else {
        v
    })
}

fn where_op(node: &Node, c: &Value, a: &Value, b: &Value) -> Result<Value> {
    if a.dtype != b.dtype {
        return Err(err(node, "X and Y must have the same type"));
    }
    let cd = c.ints("condition").map_err(|e| err(node, e))?;
    let s1 = broadcast_shape(node, &c.shape, &a.shape)?;
    let out = broadcast_shape(node, &s1, &b.shape)?;
    let (ic, ia, ib) = (
        bcast_index(&c.shape, &out),
        bcast_index(&a.shape, &out),
        bcast_index(&b.shape, &out),
    );
    let pick = |k: usize| (cd[ic[k]] != 0, ia[k], ib[k]);
    let n = ic.len();
    // out[k] = cond[k] ? x[ia[k]] : y[ib[k]], whatever the element type.
    fn select<T: Copy>(
        n: usize,
        pick: impl Fn(usize) -> (bool, usize, usize),
        x: &[T],
        y: &[T],
    ) -> Vec<T> {
        (0..n)
            .map(|k| match pick(k) {
                (true, i, _) => x[i],
                (false, _, j) => y[j],
            })
            .collect()
    }
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => Data::F32(select(n, pick, x, y)),
        (Data::F64(x), Data::F64(y)) => Data::F64(select(n, pick, x, y)),
        (Data::Int(x), Data::Int(y)) => Data::Int(select(n, pick, x, y)),
        _ => unreachable!("same dtype"),
    };
    Ok(Value {
        dtype: a.dtype,
        shape: out,
        data,
    })
}

/// C (m, n) = A (m, k) · B (k, n) in the values' precision; `ta`/`tb` transpose in place.
fn mm_f<T: recur::Real>(
    a: &[T],
    b: &[T],
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
) -> Vec<T> {
    let mut c = vec![T::ZERO; m * n];
    if m == 0 || n == 0 {
        return c;
    }
    let av = if ta {
        MatRef::new(a, k, m).t()
    } else {
        MatRef::new(a, m, k)
    };
    let bv = if tb {
        MatRef::new(b, n, k).t()
    } else {
        MatRef::new(b, k, n)
    };
    matmul(MatMut::new(&mut c, m, n), av, bv, false, Par::Threads);
    c
}

fn matmul_op(node: &Node, a: &Value, b: &Value) -> Result<Value> {
    if a.dtype != b.dtype || !a.dtype.is_float() {
        return Err(err(
            node,
            format!(
                "inputs have types {} and {}; recur's MatMul takes two float or two double tensors",
                a.dtype.name(),
                b.dtype.name()
            ),
        ));
    }
    if a.shape.is_empty() || b.shape.is_empty() {
        return Err(err(node, "MatMul needs inputs of rank 1 or more"));
    }
    let mut sa = a.shape.clone();
    let mut sb = b.shape.clone();
    let a1 = sa.len() == 1;
    let b1 = sb.len() == 1;
    if a1 {
        sa.insert(0, 1);
    }
    if b1 {
        sb.push(1);
    }
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != k2 {
        return Err(err(
            node,
            format!(
                "shapes {} and {} do not multiply",
                fmt_shape(&a.shape),
                fmt_shape(&b.shape)
            ),
        ));
    }
    let batch = broadcast_shape(node, &sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
    let nb: usize = batch.iter().product();
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    numel(&out_shape, &node.label())?;
    let ia = bcast_index(&sa[..sa.len() - 2], &batch);
    let ib = bcast_index(&sb[..sb.len() - 2], &batch);
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            let mut out = Vec::with_capacity(nb * m * n);
            for q in 0..nb {
                out.extend(mm_f(
                    &x[ia[q] * m * k..][..m * k],
                    &y[ib[q] * k * n..][..k * n],
                    m,
                    k,
                    n,
                    false,
                    false,
                ));
            }
            Data::F32(out)
        }
        (Data::F64(x), Data::F64(y)) => {
            let mut out = Vec::with_capacity(nb * m * n);
            for q in 0..nb {
                out.extend(mm_f(
                    &x[ia[q] * m * k..][..m * k],
                    &y[ib[q] * k * n..][..k * n],
                    m,
                    k,
                    n,
                    false,
                    false,
                ));
            }
            Data::F64(out)
        }
        _ => unreachable!("float types checked"),
    };
    if a1 {
        out_shape.remove(out_shape.len() - 2);
    }
    if b1 {
        out_shape.pop();
    }
    Ok(Value {
        dtype: a.dtype,
        shape: out_shape,
        data,
    })
}

fn gemm_op(node: &Node, a: &Value, b: &Value, c: Option<&Value>) -> Result<Value> {
    let alpha = node.float("alpha")?.unwrap_or(1.0) as f64;
    let beta = node.float("beta")?.unwrap_or(1.0) as f64;
    let ta = node.int("transA")?.unwrap_or(0) != 0;
    let tb = node.int("transB")?.unwrap_or(0) != 0;
    if a.shape.len() != 2 || b.shape.len() != 2 || a.dtype != b.dtype || !a.dtype.is_float() {
        return Err(err(
            node,
            format!(
                "Gemm takes two 2-D float tensors, got {} {} and {} {}",
                a.dtype.name(),
                fmt_shape(&a.shape),
                b.dtype.name(),
                fmt_shape(&b.shape)
            ),
        ));
    }
    let (m, k) = if ta {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (k2, n) = if tb {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if k != k2 {
        return Err(err(
            node,
            format!(
                "shapes {} and {} do not multiply",
                fmt_shape(&a.shape),
                fmt_shape(&b.shape)
            ),
        ));
    }
    numel(&[m, n], &node.label())?;
    let cb = match c {
        Some(c) => {
            if c.dtype != a.dtype {
                return Err(err(node, "C must have the type of A"));
            }
            let s = broadcast_shape(node, &c.shape, &[m, n])?;
            if s != [m, n] {
                return Err(err(
                    node,
                    format!(
                        "C of shape {} does not broadcast to ({m}, {n})",
                        fmt_shape(&c.shape)
                    ),
                ));
            }
            Some(broadcast_to(node, c, &[m, n])?)
        }
        None => None,
    };
    fn fin<T: recur::Real>(mut p: Vec<T>, alpha: f64, beta: f64, c: Option<&[T]>) -> Vec<T> {
        let (al, be) = (T::from_f64(alpha), T::from_f64(beta));
        for (i, v) in p.iter_mut().enumerate() {
            if alpha != 1.0 {
                *v = al * *v;
            }
            if let Some(c) = c {
                *v += if beta != 1.0 { be * c[i] } else { c[i] };
            }
        }
        p
    }
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            let cd = cb.as_ref().map(|c| match &c.data {
                Data::F32(d) => d.as_slice(),
                _ => &[],
            });
            Data::F32(fin(mm_f(x, y, m, k, n, ta, tb), alpha, beta, cd))
        }
        (Data::F64(x), Data::F64(y)) => {
            let cd = cb.as_ref().map(|c| match &c.data {
                Data::F64(d) => d.as_slice(),
                _ => &[],
            });
            Data::F64(fin(mm_f(x, y, m, k, n, ta, tb), alpha, beta, cd))
        }
        _ => unreachable!("float types checked"),
    };
    Ok(Value {
        dtype: a.dtype,
        shape: vec![m, n],
        data,
    })
}

fn gather(node: &Node, x: &Value, ind: &Value) -> Result<Value> {
    let r = x.shape.len();
    if r == 0 {
        return Err(err(node, "data must have rank 1 or more"));
    }
    let ax = axis(node, node.int("axis")?.unwrap_or(0), r)?;
    let idx = ind.ints("indices").map_err(|e| err(node, e))?;
    let dim = x.shape[ax];
    let idx: Vec<usize> = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dim as i64 } else { i };
            if j < 0 || j >= dim as i64 {
                Err(err(
                    node,
                    format!("index {i} is out of range for axis {ax} of size {dim}"),
                ))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<_>>()?;
    let outer: usize = x.shape[..ax].iter().product();
    let inner: usize = x.shape[ax + 1..].iter().product();
    let mut shape = x.shape[..ax].to_vec();
    shape.extend(&ind.shape);
    shape.extend(&x.shape[ax + 1..]);
    numel(&shape, &node.label())?;
    let mut flat = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in &idx {
            let base = (o * dim + i) * inner;
            flat.extend(base..base + inner);
        }
    }
    Ok(gather_flat(x, shape, &flat))
}

fn transpose(x: &Value, perm: &[usize]) -> Value {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let st = strides(&x.shape);
    let n = x.len();
    let r = shape.len();
    let mut idx = Vec::with_capacity(n);
    let mut coord = vec![0usize; r];
    for _ in 0..n {
        idx.push(coord.iter().zip(perm).map(|(&c, &p)| c * st[p]).sum());
        for k in (0..r).rev() {
            coord[k] += 1;
            if coord[k] < shape[k] {
                break;
            }
            coord[k] = 0;
        }
    }
    gather_flat(x, shape, &idx)
}

fn concat(node: &Node, vals: &[&Value]) -> Result<Value> {
    let first = vals.first().ok_or_else(|| err(node, "no inputs"))?;
    let r = first.shape.len();
    let ax = axis(
        node,
        node.int("axis")?
            .ok_or_else(|| err(node, "attribute 'axis' is required"))?,
        r,
    )?;
    let mut shape = first.shape.clone();
    shape[ax] = 0;
    for v in vals {
        if v.dtype != first.dtype
            || v.shape.len() != r
            || v.shape
                .iter()
                .enumerate()
                .any(|(k, &d)| k != ax && d != first.shape[k])
        {
            return Err(err(
                node,
                format!(
                    "inputs {} {} and {} {} cannot be concatenated on axis {ax}",
                    first.dtype.name(),
                    fmt_shape(&first.shape),
                    v.dtype.name(),
                    fmt_shape(&v.shape)
                ),
            ));
        }
        shape[ax] += v.shape[ax];
    }
    numel(&shape, &node.label())?;
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    macro_rules! cat {
        ($var:ident) => {{
            let mut out = Vec::with_capacity(outer * shape[ax] * inner);
            for o in 0..outer {
                for v in vals {
                    let Data::$var(d) = &v.data else {
                        unreachable!()
                    };
                    let w = v.shape[ax] * inner;
                    out.extend_from_slice(&d[o * w..(o + 1) * w]);
                }
            }
            Data::$var(out)
        }};
    }
    let data = match &first.data {
        Data::F32(_) => cat!(F32),
        Data::F64(_) => cat!(F64),
        Data::Int(_) => cat!(Int),
    };
    Ok(Value {
        dtype: first.dtype,
        shape,
        data,
    })
}

fn sub_range(x: &Value, ax: usize, start: usize, len: usize) -> Value {
    let outer: usize = x.shape[..ax].iter().product();
    let inner: usize = x.shape[ax + 1..].iter().product();
    let dim = x.shape[ax];
    let mut idx = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let base = (o * dim + start) * inner;
        idx.extend(base..base + len * inner);
    }
    let mut shape = x.shape.clone();
    shape[ax] = len;
    gather_flat(x, shape, &idx)
}

fn split(node: &Node, args: Args<'_>, opset: i64) -> Result<Vec<Option<Value>>> {
    let x = arg(node, args, 0)?;
    let ax = axis(node, node.int("axis")?.unwrap_or(0), x.shape.len())?;
    let dim = x.shape[ax];
    let parts = node.outputs.len();
    let sizes: Vec<usize> = match if opset >= 13 {
        opt(args, 1).map(|v| v.to_i64())
    } else {
        node.ints("split")?.map(|v| v.to_vec())
    } {
        Some(s) => s
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| err(node, "negative split")))
            .collect::<Result<_>>()?,
        None => {
            let n = node
                .int("num_outputs")?
                .map_or(parts, |v| v.max(1) as usize);
            let each = dim.div_ceil(n);
            (0..n)
                .map(|k| each.min(dim.saturating_sub(k * each)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != dim {
        return Err(err(
            node,
            format!("split sizes {sizes:?} do not add up to {dim}"),
        ));
    }
    let mut out = Vec::new();
    let mut at = 0;
    for s in sizes {
        out.push(Some(sub_range(x, ax, at, s)));
        at += s;
    }
    Ok(out)
}

fn slice(node: &Node, args: Args<'_>, opset: i64) -> Result<Value> {
    let x = arg(node, args, 0)?;
    let r = x.shape.len();
    let (starts, ends, axes, steps) = if opset >= 10 {
        (
            arg(node, args, 1)?.to_i64(),
            arg(node, args, 2)?.to_i64(),
            opt(args, 3).map(|v| v.to_i64()),
            opt(args, 4).map(|v| v.to_i64()),
        )
    } else {
        (
            node.ints("starts")?.unwrap_or(&[]).to_vec(),
            node.ints("ends")?.unwrap_or(&[]).to_vec(),
            node.ints("axes")?.map(|a| a.to_vec()),
            None,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(err(
            node,
            "starts, ends, axes and steps must have the same length",
        ));
    }
    // Per axis: start and step, and the count.
    let mut sel: Vec<(i64, i64, usize)> = x.shape.iter().map(|&d| (0, 1, d)).collect();
    for k in 0..starts.len() {
        let a = axis(node, axes[k], r)?;
        let d = x.shape[a] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(err(node, "step 0"));
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = (norm(starts[k]), norm(ends[k]));
        let (s, e) = if step > 0 {
            (s.clamp(0, d), e.clamp(0, d))
        } else {
            (s.clamp(-1, d - 1), e.clamp(-1, d - 1))
        };
        let count = if step > 0 {
            if e > s {
                (e - s + step - 1) / step
            } else {
                0
            }
        } else if s > e {
            (s - e + (-step) - 1) / (-step)
        } else {
            0
        };
        sel[a] = (s, step, count as usize);
    }
    let shape: Vec<usize> = sel.iter().map(|s| s.2).collect();
    let n = numel(&shape, &node.label())?;
    let st = strides(&x.shape);
    let mut idx = Vec::with_capacity(n);
    let mut coord = vec![0usize; r];
    for _ in 0..n {
        let mut f = 0i64;
        for k in 0..r {
            f += (sel[k].0 + coord[k] as i64 * sel[k].1) * st[k] as i64;
        }
        idx.push(f as usize);
        for k in (0..r).rev() {
            coord[k] += 1;
            if coord[k] < shape[k] {
                break;
            }
            coord[k] = 0;
        }
    }
    Ok(gather_flat(x, shape, &idx))
}

fn softmax(node: &Node, x: &Value, opset: i64) -> Result<Value> {
    let r = x.shape.len();
    if r == 0 || !x.dtype.is_float() {
        return Err(err(node, "input must be a float tensor of rank 1 or more"));
    }
    let log = node.op == "LogSoftmax";
    let a = axis(
        node,
        node.int("axis")?
            .unwrap_or(if opset >= 13 { -1 } else { 1 }),
        r,
    )?;
    // Opset < 13: the input is flattened to 2-D at `axis`; from 13: along one axis.
    let (outer, dim, inner) = if opset >= 13 {
        (
            x.shape[..a].iter().product::<usize>(),
            x.shape[a],
            x.shape[a + 1..].iter().product::<usize>(),
        )
    } else {
        (
            x.shape[..a].iter().product::<usize>(),
            x.shape[a..].iter().product::<usize>(),
            1,
        )
    };
    let v = x.to_f64();
    let mut out = vec![0.0; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * dim + k) * inner + i;
            let m = (0..dim).map(|k| v[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..dim).map(|k| (v[at(k)] - m).exp()).sum();
            for k in 0..dim {
                out[at(k)] = if log {
                    v[at(k)] - m - s.ln()
                } else {
                    (v[at(k)] - m).exp() / s
                };
            }
        }
    }
    Ok(Value::float(x.dtype, x.shape.clone(), out))
}

fn reduce(node: &Node, args: Args<'_>, opset: i64) -> Result<Value> {
    let x = arg(node, args, 0)?;
    let r = x.shape.len();
    let axes_in: Option<Vec<i64>> = if (node.op == "ReduceSum" && opset >= 13) || opset >= 18 {
        opt(args, 1).map(|v| v.to_i64())
    } else {
        node.ints("axes")?.map(|a| a.to_vec())
    };
    let keep = node.int("keepdims")?.unwrap_or(1) != 0;
    let noop = node.int("noop_with_empty_axes")?.unwrap_or(0) != 0;
    let axes: Vec<usize> = match axes_in {
        Some(a) if !a.is_empty() => a.iter().map(|&v| axis(node, v, r)).collect::<Result<_>>()?,
        _ if noop => return Ok(x.clone()),
        _ => (0..r).collect(),
    };
    let mut out_shape = x.shape.clone();
    for &a in &axes {
        out_shape[a] = 1;
    }
    let idx = bcast_index(&out_shape, &x.shape);
    let n_out: usize = out_shape.iter().product();
    if node.op == "ReduceProd" {
        // Integers multiply exactly (wrapping as in two's complement), floats in f64.
        let shape = reduced_shape(&x.shape, &out_shape, &axes, keep);
        return Ok(match &x.data {
            Data::Int(d) => {
                let mut acc = vec![1i64; n_out];
                for (k, &o) in idx.iter().enumerate() {
                    acc[o] = acc[o].wrapping_mul(d[k]);
                }
                Value::int(x.dtype, shape, acc)
            }
            _ => {
                let v = x.to_f64();
                let mut acc = vec![1.0; n_out];
                for (k, &o) in idx.iter().enumerate() {
                    acc[o] *= v[k];
                }
                Value::float(x.dtype, shape, acc)
            }
        });
    }
    let v = x.to_f64();
    let mut acc = vec![0.0; n_out];
    for (k, &o) in idx.iter().enumerate() {
        acc[o] += v[k];
    }
    if node.op == "ReduceMean" {
        let cnt: usize = axes.iter().map(|&a| x.shape[a]).product();
        for a in acc.iter_mut() {
            *a /= cnt.max(1) as f64;
        }
    }
    let shape = reduced_shape(&x.shape, &out_shape, &axes, keep);
    Ok(match x.dtype {
        t if t.is_float() => Value::float(t, shape, acc),
        t => Value::int(t, shape, acc.iter().map(|&v| v as i64).collect()),
    })
}

/// The shape of a reduction: the kept axes as 1 (`keep`) or dropped.
fn reduced_shape(shape: &[usize], kept: &[usize], axes: &[usize], keep: bool) -> Vec<usize> {
    if keep {
        kept.to_vec()
    } else {
        shape
            .iter()
            .enumerate()
            .filter(|(k, _)| !axes.contains(k))
            .map(|(_, &d)| d)
            .collect()
    }
}

/// ONNX `ReverseSequence` (opset 10): along `time_axis` (0 or 1), the first
/// `sequence_lens[b]` elements of each batch entry `b` (along `batch_axis`, the other one)
/// reversed, the rest copied.
fn reverse_sequence(node: &Node, x: &Value, lens: &Value) -> Result<Value> {
    let time_axis = node.int("time_axis")?.unwrap_or(0);
    let batch_axis = node.int("batch_axis")?.unwrap_or(1);
    if !matches!((time_axis, batch_axis), (0, 1) | (1, 0)) {
        return Err(err(
            node,
            format!(
                "time_axis {time_axis} and batch_axis {batch_axis}: ONNX allows 0 and 1, one each"
            ),
        ));
    }
    if x.shape.len() < 2 {
        return Err(err(
            node,
            format!(
                "input has shape {}; it needs rank 2 or more",
                fmt_shape(&x.shape)
            ),
        ));
    }
    let (t_ax, b_ax) = (time_axis as usize, batch_axis as usize);
    let (steps, batch) = (x.shape[t_ax], x.shape[b_ax]);
    let l = lens.ints("ReverseSequence sequence_lens")?;
    if lens.shape != [batch] {
        return Err(err(
            node,
            format!(
                "sequence_lens has shape {}, expected ({batch}) for an input of shape {}",
                fmt_shape(&lens.shape),
                fmt_shape(&x.shape)
            ),
        ));
    }
    if let Some(&bad) = l.iter().find(|&&v| v < 0 || v as usize > steps) {
        return Err(err(
            node,
            format!("sequence length {bad} is outside 0..={steps} (the time axis)"),
        ));
    }
    // The elements of one (time, batch) position are contiguous: the axes after both.
    let inner: usize = x.shape[2..].iter().product();
    let st = strides(&x.shape);
    let mut idx = Vec::with_capacity(x.len());
    // Output position (i0, i1, rest) reads from the same position with time reversed.
    for i0 in 0..x.shape[0] {
        for i1 in 0..x.shape[1] {
            let (t, b) = if t_ax == 0 { (i0, i1) } else { (i1, i0) };
            let n = l[b] as usize;
            let src_t = if t < n { n - 1 - t } else { t };
            let base = src_t * st[t_ax] + b * st[b_ax];
            idx.extend(base..base + inner);
        }
    }
    Ok(gather_flat(x, x.shape.clone(), &idx))
}
