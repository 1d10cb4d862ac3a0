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
        let rec = check_nodes(&graph, &mut defined, source)?;
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
        let ctx = RunCtx {
            feeds,
            profile,
            iterations: std::cell::Cell::new(0),
        };
        let mut scope = Scope {
            vals: env,
            inits: &self.inits,
            parent: None,
        };
        self.exec_nodes(&ctx, &self.graph, &mut scope, &mut held, true)?;
        let env = scope.vals;
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

    /// Runs the nodes of `graph` (the model's, or a `Loop` body when `top` is false) in
    /// order, adding each output to `scope` and its size to `held`.
    fn exec_nodes<'a>(
        &self,
        ctx: &RunCtx<'_>,
        graph: &'a Graph,
        scope: &mut Scope<'a>,
        held: &mut usize,
        top: bool,
    ) -> Result<()> {
        for (k, node) in graph.nodes.iter().enumerate() {
            let mut args: Vec<Option<Arc<Value>>> = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name.is_empty() {
                    args.push(None);
                    continue;
                }
                let v = scope.get(name).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: {}: input '{name}' has no value",
                        self.source,
                        node.label()
                    ))
                })?;
                args.push(Some(v));
            }
            let t0 = ctx.profile.then(std::time::Instant::now);
            let outs = if node.op == "Loop" {
                self.run_loop(ctx, node, &args, scope, *held)?
            } else if let Some(cell) = Cell::from_op(&node.op) {
                if top {
                    let attrs = self.rec.get(k).and_then(|a| a.as_ref()).ok_or_else(|| {
                        Error::Invalid(format!(
                            "{}: {}: the node's attributes were not read",
                            self.source,
                            node.label()
                        ))
                    })?;
                    self.run_recurrent(k, node, attrs, &args, ctx.feeds)?
                } else {
                    // Inside a body: the attributes were checked at load time; no cached layer.
                    let attrs = Attrs::from_node(node, cell, self.graph.opset)
                        .map_err(|e| prefix(&self.source, e))?;
                    self.run_recurrent_uncached(node, &attrs, &args)?
                }
            } else {
                ops::run(node, &args, self.graph.opset).map_err(|e| prefix(&self.source, e))?
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
                        *held = held.saturating_add(v.len());
                        if *held > self.max_elements {
                            return Err(Error::Invalid(format!(
                                "{}: {}: the values of this run would hold more than {} elements",
                                self.source,
                                node.label(),
                                self.max_elements
                            )));
                        }
                        scope.vals.insert(name.as_str(), Arc::new(v));
                    }
                }
            }
        }
        Ok(())
    }

    /// ONNX `Loop` (opsets 11 and up; the body's inputs are the iteration number, the
    /// condition and the N loop-carried values; its outputs the condition, the N values and K
    /// scan outputs, which are stacked along a new first axis). The values of one iteration
    /// are dropped after it: they count against the element limit only while it runs, with
    /// everything outside the loop (`held`), the carried values and the scan outputs so far.
    /// All loops of one run together run at most `max_elements` iterations.
    fn run_loop<'a>(
        &self,
        ctx: &RunCtx<'_>,
        node: &'a Node,
        args: &[Option<Arc<Value>>],
        scope: &'a Scope<'a>,
        held: usize,
    ) -> Result<Vec<Option<Value>>> {
        let l = format!("{}: {}", self.source, node.label());
        let body = node
            .graph("body")
            .map_err(|e| prefix(&self.source, e))?
            .ok_or_else(|| Error::Invalid(format!("{l}: attribute 'body' is required")))?;
        let n = args.len().saturating_sub(2);
        let scalar = |v: &Value, what: &str| -> Result<i64> {
            if v.len() != 1 || v.dtype.is_float() {
                return Err(Error::Invalid(format!(
                    "{l}: {what} must be one integer or bool, got {} {}",
                    v.dtype.name(),
                    fmt_shape(&v.shape)
                )));
            }
            Ok(v.to_i64()[0])
        };
        let max_trip = match args.first().and_then(|a| a.as_deref()) {
            Some(v) => Some(scalar(v, "the trip count M")?),
            None => None,
        };
        let cond_given = args.get(1).and_then(|a| a.as_deref());
        let mut cond = match cond_given {
            Some(v) => scalar(v, "the condition")? != 0,
            None => true,
        };
        let mut carried: Vec<Arc<Value>> = Vec::with_capacity(n);
        for (j, a) in args.iter().skip(2).enumerate() {
            carried.push(a.clone().ok_or_else(|| {
                Error::Invalid(format!("{l}: loop-carried input {} is empty", j + 2))
            })?);
        }
        let n_scan = body.outputs.len() - 1 - n;
        let inits: HashMap<String, Arc<Value>> = body
            .initializers
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
            .collect();
        let mut scans: Vec<Vec<Value>> = (0..n_scan).map(|_| Vec::new()).collect();
        let mut scan_held = 0usize;
        let mut it: i64 = 0;
        while cond && max_trip.is_none_or(|m| it < m) {
            let total = ctx.iterations.get() + 1;
            if total > self.max_elements {
                return Err(Error::Invalid(format!(
                    "{l}: the loops of this run would run more than {} iterations",
                    self.max_elements
                )));
            }
            ctx.iterations.set(total);
            let mut sub = Scope {
                vals: HashMap::new(),
                inits: &inits,
                parent: Some(scope),
            };
            fn bind<'b>(sub: &mut Scope<'b>, body: &'b Graph, k: usize, v: Arc<Value>) {
                let name = body.inputs[k].name.as_str();
                if !name.is_empty() {
                    sub.vals.insert(name, v);
                }
            }
            bind(
                &mut sub,
                body,
                0,
                Arc::new(Value::int(DType::I64, vec![], vec![it])),
            );
            bind(
                &mut sub,
                body,
                1,
                Arc::new(Value::int(DType::Bool, vec![], vec![cond as i64])),
            );
            let mut h = held.saturating_add(scan_held);
            for (j, v) in carried.iter().enumerate() {
                h = h.saturating_add(v.len());
                bind(&mut sub, body, 2 + j, v.clone());
            }
            self.exec_nodes(ctx, body, &mut sub, &mut h, false)?;
            let out = |k: usize| -> Result<Arc<Value>> {
                let name = &body.outputs[k].name;
                sub.get(name).ok_or_else(|| {
                    Error::Invalid(format!("{l}: the body's output '{name}' has no value"))
                })
            };
            let c = out(0)?;
            let c = scalar(&c, "the body's condition output")? != 0;
            // Without a condition input, the body's condition is ignored (ONNX's `for` form).
            if cond_given.is_some() {
                cond = c;
            }
            for (j, slot) in carried.iter_mut().enumerate() {
                *slot = out(1 + j)?;
            }
            for (j, acc) in scans.iter_mut().enumerate() {
                let v = out(1 + n + j)?;
                if let Some(first) = acc.first() {
                    if first.shape != v.shape || first.dtype != v.dtype {
                        return Err(Error::Invalid(format!(
                            "{l}: scan output '{}' is {} {} in iteration {it} but {} {} before",
                            body.outputs[1 + n + j].name,
                            v.dtype.name(),
                            fmt_shape(&v.shape),
                            first.dtype.name(),
                            fmt_shape(&first.shape)
                        )));
                    }
                }
                scan_held = scan_held.saturating_add(v.len());
                if held.saturating_add(scan_held) > self.max_elements {
                    return Err(Error::Invalid(format!(
                        "{l}: the values of this run would hold more than {} elements",
                        self.max_elements
                    )));
                }
                acc.push((*v).clone());
            }
            it += 1;
        }
        let mut outs: Vec<Option<Value>> = carried.iter().map(|v| Some((**v).clone())).collect();
        for (j, acc) in scans.into_iter().enumerate() {
            outs.push(Some(match acc.first() {
                None => {
                    let t = body.outputs[1 + n + j].dtype.unwrap_or(DType::F32);
                    Value::zeros(t, vec![0])
                }
                Some(first) => {
                    let mut shape = vec![acc.len()];
                    shape.extend_from_slice(&first.shape);
                    Value::stack(shape, &acc)
                }
            }));
        }
        Ok(outs)
    }

    fn run_recurrent_uncached(
        &self,
        node: &Node,
        attrs: &Attrs,
        args: &[Option<Arc<Value>>],
    ) -> Result<Vec<Option<Value>>> {
        let l = format!("{}: {}", self.source, node.label());
        let inp = recurrent_inputs(&l, attrs, args)?;
        let o = recurrent::run(node, attrs, &inp, None).map_err(|e| prefix(&self.source, e))?;
        Ok(vec![Some(o.y), Some(o.y_h), o.y_c])
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
        let inp = recurrent_inputs(&l, attrs, args)?;
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

/// The inputs of a recurrent node by their ONNX roles.
fn recurrent_inputs<'a>(
    l: &str,
    attrs: &Attrs,
    args: &'a [Option<Arc<Value>>],
) -> Result<recurrent::Inputs<'a>> {
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
    Ok(recurrent::Inputs {
        x: need(0, "X")?,
        w: need(1, "W")?,
        r: need(2, "R")?,
        b: arg(3),
        seq_lens: arg(4),
        initial_h: arg(5),
        initial_c: arg(6),
        p: arg(7),
    })
}

/// The values a graph sees: its own (inputs and node outputs), its initializers, then those
/// of the graphs around it (a `Loop` body may use any name defined before the `Loop`).
struct Scope<'a> {
    vals: HashMap<&'a str, Arc<Value>>,
    inits: &'a HashMap<String, Arc<Value>>,
    parent: Option<&'a Scope<'a>>,
}

impl Scope<'_> {
    fn get(&self, name: &str) -> Option<Arc<Value>> {
        let mut s = Some(self);
        while let Some(sc) = s {
            if let Some(v) = sc.vals.get(name).or_else(|| sc.inits.get(name)) {
                return Some(v.clone());
            }
            s = sc.parent;
        }
        None
    }
}

/// What every graph of one run shares.
struct RunCtx<'f> {
    feeds: &'f HashMap<String, Value>,
    profile: bool,
    /// Iterations of every `Loop` so far.
    iterations: std::cell::Cell<usize>,
}

/// Checks the nodes of `graph` in order: each operator is supported, each input defined
/// before (in `defined`: the names of this graph and of the graphs around it), `Loop` bodies
/// recursively; returns the attributes of each recurrent node.
fn check_nodes<'a>(
    graph: &'a Graph,
    defined: &mut HashSet<&'a str>,
    source: &str,
) -> Result<Vec<Option<Attrs>>> {
    let mut rec = Vec::with_capacity(graph.nodes.len());
    for n in &graph.nodes {
        let l = format!("{source}: {}", n.label());
        if n.op != "Loop" && !ops::supported(&n.op) && Cell::from_op(&n.op).is_none() {
            return Err(Error::Unsupported(format!(
                "{l}: operator {} is not supported (recur runs RNN, GRU, LSTM, Loop and {})",
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
        if n.op == "Loop" {
            if graph.opset < 11 {
                return Err(Error::Unsupported(format!(
                    "{l}: Loop is run in its form of opset 11 and later; this model has opset {}",
                    graph.opset
                )));
            }
            let body = n
                .graph("body")
                .map_err(|e| prefix(source, e))?
                .ok_or_else(|| Error::Malformed(format!("{l}: attribute 'body' is required")))?;
            let carried = n.inputs.len().saturating_sub(2);
            if n.inputs.len() < 2
                || body.inputs.len() != n.inputs.len()
                || body.outputs.len() < 1 + carried
                || n.outputs.len() != body.outputs.len() - 1
            {
                return Err(Error::Malformed(format!(
                    "{l}: a Loop with {} inputs (M, cond and N loop-carried values) needs a body with 2 + N inputs and 1 + N + K outputs and a node with N + K outputs; the body has {} inputs and {} outputs, the node {} outputs",
                    n.inputs.len(),
                    body.inputs.len(),
                    body.outputs.len(),
                    n.outputs.len()
                )));
            }
            let mut inner = defined.clone();
            inner.extend(body.initializers.keys().map(|s| s.as_str()));
            inner.extend(body.inputs.iter().map(|i| i.name.as_str()));
            check_nodes(body, &mut inner, source)?;
            for o in &body.outputs {
                if !inner.contains(o.name.as_str()) {
                    return Err(Error::Malformed(format!(
                        "{l}: the body's output '{}' is produced by no node",
                        o.name
                    )));
                }
            }
        }
        defined.extend(
            n.outputs
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.as_str()),
        );
        rec.push(match Cell::from_op(&n.op) {
            Some(c) => Some(Attrs::from_node(n, c, graph.opset).map_err(|e| prefix(source, e))?),
            None => None,
        });
    }
    Ok(rec)
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
