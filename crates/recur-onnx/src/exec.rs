//! Running a graph: values by name, nodes in the file's (topological) order.

use crate::error::{Error, Result};
use crate::ops;
use crate::reader::{read_model, Dim, Graph, IoInfo, Node};
use crate::recurrent::{self, Attrs, Cell, Fast};
use crate::value::{fmt_shape, DType, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;

/// A checked ONNX model, ready to run.
#[derive(Debug)]
pub struct Model {
    source: String,
    graph: Graph,
    /// The attributes of each recurrent node (None for other nodes).
    rec: Vec<Option<Attrs>>,
    /// Fast layers built from constant weights, per node, on first use.
    fast: Vec<OnceLock<Option<Fast>>>,
    /// The most elements the values of one run may hold together.
    max_elements: usize,
    /// The initializers, shared with every run (no copy per run).
    inits: HashMap<String, Arc<Value>>,
}

impl Model {
    /// Reads and checks an ONNX file.
    pub fn read(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let src = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|e| Error::Io(format!("{src}: cannot read: {e}")))?;
        Model::from_bytes(&bytes, &src)
    }

    /// Decodes and checks the bytes of an ONNX file; `source` names it in messages. Every
    /// operator is checked here, so a model that would fail on an unsupported node fails
    /// before it runs.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Model> {
        let graph = read_model(bytes, source)?;
        let mut defined: HashSet<&str> = graph.initializers.keys().map(|s| s.as_str()).collect();
        defined.extend(graph.inputs.iter().map(|i| i.name.as_str()));
        let mut rec = Vec::with_capacity(graph.nodes.len());
        for n in &graph.nodes {
            let l = format!("{source}: {}", n.label());
            if !ops::supported(&n.op) && Cell::from_op(&n.op).is_none() {
                return Err(Error::Unsupported(format!(
                    "{l}: operator {} is not supported (recur runs RNN, GRU, LSTM and {})",
                    n.op,
                    ops::SUPPORTED.join(", ")
                )));
            }
            for i in n.inputs.iter().filter(|s| !s.is_empty()) {
                if !defined.contains(i.as_str()) {
                    return Err(Error::Malformed(format!(
                        "{l}: input '{i}' is neither a graph input, an initializer nor an output of an earlier node"
                    )));
                }
            }
            defined.extend(
                n.outputs
                    .iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.as_str()),
            );
            rec.push(match Cell::from_op(&n.op) {
                Some(c) => {
                    Some(Attrs::from_node(n, c, graph.opset).map_err(|e| prefix(source, e))?)
                }
                None => None,
            });
        }
        for o in &graph.outputs {
            if !defined.contains(o.name.as_str()) {
                return Err(Error::Malformed(format!(
                    "{source}: graph output '{}' is produced by no node",
                    o.name
                )));
            }
        }
        let fast = (0..graph.nodes.len()).map(|_| OnceLock::new()).collect();
        let inits = graph
            .initializers
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
            .collect();
        Ok(Model {
            source: source.to_string(),
            graph,
            rec,
            fast,
            max_elements: crate::value::MAX_ELEMENTS,
            inits,
        })
    }

    /// Limits the elements that the values of one run may hold together (and any single
    /// tensor); at most [`MAX_ELEMENTS`](crate::value::MAX_ELEMENTS), the default. A run that
    /// would exceed it stops with an error naming the node, before allocating.
    pub fn set_max_elements(&mut self, n: usize) {
        self.max_elements = n.min(crate::value::MAX_ELEMENTS);
    }

    /// The file name used in messages.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// The decoded graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    /// The graph inputs that must be fed (those without an initializer).
    pub fn required_inputs(&self) -> impl Iterator<Item = &IoInfo> {
        self.graph
            .inputs
            .iter()
            .filter(|i| !self.graph.initializers.contains_key(&i.name))
    }
    /// Every graph input (including those an initializer provides a default for).
    pub fn inputs(&self) -> &[IoInfo] {
        &self.graph.inputs
    }
    /// The graph outputs.
    pub fn outputs(&self) -> &[IoInfo] {
        &self.graph.outputs
    }

    /// Runs the graph on `feeds` (graph inputs by name; a feed may replace an initializer that
    /// is also a graph input) and returns every graph output by name, in the graph's order.
    /// `feeds_source` names where the feeds come from, in messages.
    pub fn run(
        &self,
        feeds: &HashMap<String, Value>,
        feeds_source: &str,
    ) -> Result<Vec<(String, Value)>> {
        let _limit = crate::value::limit_elements(self.max_elements);
        // RECUR_ONNX_PROFILE=1 prints each node's time to standard error.
        let profile = std::env::var_os("RECUR_ONNX_PROFILE").is_some();
        let mut held: usize = feeds.values().map(|v| v.len()).sum();
        let mut env: HashMap<&str, Arc<Value>> = HashMap::new();
        let input_names: HashSet<&str> =
            self.graph.inputs.iter().map(|i| i.name.as_str()).collect();
        for (name, _) in feeds.iter() {
            if !input_names.contains(name.as_str()) {
                let names: Vec<String> = self
                    .graph
                    .inputs
                    .iter()
                    .map(|i| format!("'{}'", i.name))
                    .collect();
                return Err(Error::Invalid(format!(
                    "{feeds_source}: tensor '{name}' is not an input of {} (its inputs are {})",
                    self.source,
                    names.join(", ")
                )));
            }
        }
        for info in &self.graph.inputs {
            let v = match feeds.get(&info.name) {
                Some(v) => check_input(info, v, feeds_source)?,
                None => match self.graph.initializers.get(&info.name) {
                    Some(_) => continue,
                    None => {
                        return Err(Error::Invalid(format!(
                            "{feeds_source}: no tensor '{}' (input of {}: {})",
                            info.name,
                            self.source,
                            info.describe()
                        )))
                    }
                },
            };
            env.insert(info.name.as_str(), Arc::new(v));
        }
        // Initializers are looked up in place, without copying.
        let get = |env: &HashMap<&str, Arc<Value>>, name: &str| -> Option<Arc<Value>> {
            env.get(name).cloned()
        };
        for (k, node) in self.graph.nodes.iter().enumerate() {
            let mut args: Vec<Option<Arc<Value>>> = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name.is_empty() {
                    args.push(None);
                    continue;
                }
                let v = match get(&env, name) {
                    Some(v) => v,
                    None => {
                        let init = self.inits.get(name).ok_or_else(|| {
                            Error::Invalid(format!(
                                "{}: {}: input '{name}' has no value",
                                self.source,
                                node.label()
                            ))
                        })?;
                        init.clone()
                    }
                };
                args.push(Some(v));
            }
            let t0 = profile.then(std::time::Instant::now);
            let outs = match &self.rec[k] {
                Some(attrs) => self.run_recurrent(k, node, attrs, &args, feeds)?,
                None => {
                    ops::run(node, &args, self.graph.opset).map_err(|e| prefix(&self.source, e))?
                }
            };
            if let Some(t0) = t0 {
                eprintln!(
                    "{:>9.3} ms  {}",
                    t0.elapsed().as_secs_f64() * 1e3,
                    node.label()
                );
            }
            for (name, v) in node.outputs.iter().zip(outs) {
                if !name.is_empty() {
                    if let Some(v) = v {
                        held = held.saturating_add(v.len());
                        if held > self.max_elements {
                            return Err(Error::Invalid(format!(
                                "{}: {}: the values of this run would hold more than {} elements",
                                self.source,
                                node.label(),
                                self.max_elements
                            )));
                        }
                        env.insert(name.as_str(), Arc::new(v));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(self.graph.outputs.len());
        for info in &self.graph.outputs {
            let v = match env.get(info.name.as_str()) {
                Some(v) => (**v).clone(),
                None => match self.graph.initializers.get(&info.name) {
                    Some(v) => v.clone(),
                    None => {
                        return Err(Error::Invalid(format!(
                        "{}: graph output '{}' was not produced (an optional output left empty?)",
                        self.source, info.name
                    )))
                    }
                },
            };
            let v = match info.dtype {
                Some(t) if t != v.dtype && t.is_float() == v.dtype.is_float() => v.cast(t),
                _ => v,
            };
            out.push((info.name.clone(), v));
        }
        Ok(out)
    }

    fn run_recurrent(
        &self,
        k: usize,
        node: &Node,
        attrs: &Attrs,
        args: &[Option<Arc<Value>>],
        feeds: &HashMap<String, Value>,
    ) -> Result<Vec<Option<Value>>> {
        let l = format!("{}: {}", self.source, node.label());
        let arg = |i: usize| args.get(i).and_then(|a| a.as_deref());
        let need = |i: usize, what: &str| {
            arg(i).ok_or_else(|| Error::Invalid(format!("{l}: input {what} is required")))
        };
        if args.len() > 8 || (attrs.cell != Cell::Lstm && args.len() > 6) {
            return Err(Error::Invalid(format!(
                "{l}: too many inputs ({})",
                args.len()
            )));
        }
        let inp = recurrent::Inputs {
            x: need(0, "X")?,
            w: need(1, "W")?,
            r: need(2, "R")?,
            b: arg(3),
            seq_lens: arg(4),
            initial_h: arg(5),
            initial_c: arg(6),
            p: arg(7),
        };
        // Weights that are initializers (and not fed) give a layer kept across runs.
        let constant = |i: usize| {
            node.input(i)
                .is_none_or(|n| self.graph.initializers.contains_key(n) && !feeds.contains_key(n))
        };
        let cached =
            if constant(1) && constant(2) && constant(3) && recurrent::fast_eligible(attrs, &inp) {
                self.fast[k]
                    .get_or_init(|| recurrent::build_fast(attrs, inp.w, inp.r, inp.b).ok())
                    .as_ref()
            } else {
                None
            };
        let o = recurrent::run(node, attrs, &inp, cached).map_err(|e| prefix(&self.source, e))?;
        Ok(vec![Some(o.y), Some(o.y_h), o.y_c])
    }
}

fn prefix(source: &str, e: Error) -> Error {
    let add = |m: String| {
        if m.starts_with(source) {
            m
        } else {
            format!("{source}: {m}")
        }
    };
    match e {
        Error::Malformed(m) => Error::Malformed(add(m)),
        Error::Unsupported(m) => Error::Unsupported(add(m)),
        Error::Invalid(m) => Error::Invalid(add(m)),
        Error::Io(m) => Error::Io(m),
    }
}

/// Checks a fed input against the graph's declaration; integers are converted to the declared
/// integer type, floats to the declared float type.
fn check_input(info: &IoInfo, v: &Value, src: &str) -> Result<Value> {
    let v = match info.dtype {
        Some(t) if t == v.dtype => v.clone(),
        Some(t) if t.is_float() && v.dtype.is_float() => v.cast(t),
        Some(t)
            if !t.is_float()
                && !v.dtype.is_float()
                && t != DType::Bool
                && v.dtype != DType::Bool =>
        {
            v.cast(t)
        }
        Some(t) => {
            return Err(Error::Invalid(format!(
                "{src}: tensor '{}' has type {}, but the graph input is {}",
                info.name,
                v.dtype.name(),
                t.name()
            )))
        }
        None if info.elem_type != 0 => {
            return Err(Error::Unsupported(format!(
                "graph input '{}' has element type {} ({}), which recur does not handle",
                info.name,
                info.elem_type,
                crate::reader::type_name(info.elem_type)
            )))
        }
        None => v.clone(),
    };
    if let Some(shape) = &info.shape {
        let ok = shape.len() == v.shape.len()
            && shape.iter().zip(&v.shape).all(|(d, &n)| match d {
                Dim::Fixed(f) => *f == n,
                Dim::Param(_) => true,
            });
        if !ok {
            return Err(Error::Invalid(format!(
                "{src}: tensor '{}' has shape {}, but the graph input is {}",
                info.name,
                fmt_shape(&v.shape),
                info.describe()
            )));
        }
    }
    Ok(v)
}
