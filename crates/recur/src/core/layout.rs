//! The parameter layout: one table that gives every parameter's PyTorch name, shape and place
//! in the flat parameter buffer. Loading, saving, initialization, gradients and optimizers all
//! read this table; nothing else lists parameters.

use crate::core::config::{Mode, RnnConfig};
use std::ops::Range;

/// What a parameter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// `weight_ih`: (G·H, in)
    WeightIh,
    /// `weight_hh`: (G·H, H_out)
    WeightHh,
    /// `bias_ih`: (G·H)
    BiasIh,
    /// `bias_hh`: (G·H)
    BiasHh,
    /// `weight_hr` (LSTM projection): (P, H)
    WeightHr,
    /// `ln_ih_weight`: the gain of the layer norm of `x W_ihᵀ`, (G·H), initially 1
    LnIhWeight,
    /// `ln_ih_bias`: its bias, (G·H), initially 0
    LnIhBias,
    /// `ln_hh_weight`: the gain of the layer norm of `h W_hhᵀ`, (G·H), initially 1
    LnHhWeight,
    /// `ln_hh_bias`: its bias, (G·H), initially 0
    LnHhBias,
    /// `ln_c_weight` (LSTM): the gain of the layer norm of the new cell state, (H), initially 1
    LnCWeight,
    /// `ln_c_bias` (LSTM): its bias, (H), initially 0
    LnCBias,
    /// `weight_peephole` (LSTM with peepholes): (3, H), rows p_i, p_f, p_o
    WeightPeephole,
}

impl ParamKind {
    fn stem(self) -> &'static str {
        match self {
            ParamKind::WeightIh => "weight_ih",
            ParamKind::WeightHh => "weight_hh",
            ParamKind::BiasIh => "bias_ih",
            ParamKind::BiasHh => "bias_hh",
            ParamKind::WeightHr => "weight_hr",
            ParamKind::LnIhWeight => "ln_ih_weight",
            ParamKind::LnIhBias => "ln_ih_bias",
            ParamKind::LnHhWeight => "ln_hh_weight",
            ParamKind::LnHhBias => "ln_hh_bias",
            ParamKind::LnCWeight => "ln_c_weight",
            ParamKind::LnCBias => "ln_c_bias",
            ParamKind::WeightPeephole => "weight_peephole",
        }
    }
    /// True for the layer-norm gains and biases (not in PyTorch's `nn.LSTM`).
    pub fn is_layer_norm(self) -> bool {
        matches!(
            self,
            ParamKind::LnIhWeight
                | ParamKind::LnIhBias
                | ParamKind::LnHhWeight
                | ParamKind::LnHhBias
                | ParamKind::LnCWeight
                | ParamKind::LnCBias
        )
    }
    /// The value nn.LayerNorm starts from: 1 for a gain, 0 for a bias (None for the others).
    pub fn layer_norm_init(self) -> Option<f64> {
        match self {
            ParamKind::LnIhWeight | ParamKind::LnHhWeight | ParamKind::LnCWeight => Some(1.0),
            ParamKind::LnIhBias | ParamKind::LnHhBias | ParamKind::LnCBias => Some(0.0),
            _ => None,
        }
    }
}

/// How parameters are named: layers (`weight_ih_l0_reverse`) or cells (`weight_ih`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `nn.RNN` / `nn.LSTM` / `nn.GRU`
    Layer,
    /// `nn.RNNCell` / `nn.LSTMCell` / `nn.GRUCell`
    Cell,
}

/// One parameter tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamEntry {
    /// The PyTorch name, e.g. `weight_hh_l1_reverse`.
    pub name: String,
    /// The PyTorch shape.
    pub shape: Vec<usize>,
    /// Where it starts in the flat buffer.
    pub offset: usize,
    /// Layer index.
    pub layer: usize,
    /// 0 = forward, 1 = reverse.
    pub direction: usize,
    /// Which parameter it is.
    pub kind: ParamKind,
}

impl ParamEntry {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its range in the flat buffer.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Where the parameters of one (layer, direction) live in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirLayout {
    /// `weight_ih`: (G·H, in)
    pub w_ih: Range<usize>,
    /// `weight_hh`: (G·H, H_out)
    pub w_hh: Range<usize>,
    /// `bias_ih`: (G·H)
    pub b_ih: Option<Range<usize>>,
    /// `bias_hh`: (G·H)
    pub b_hh: Option<Range<usize>>,
    /// `weight_hr`: (P, H)
    pub w_hr: Option<Range<usize>>,
    /// The input size of this layer.
    pub input_size: usize,
    /// The layer-norm parameters, when the configuration has them.
    pub ln: Option<LnLayout>,
    /// `weight_peephole`: (3, H), rows p_i, p_f, p_o (LSTM with peepholes)
    pub peephole: Option<Range<usize>>,
}

/// Where the layer-norm gains and biases of one (layer, direction) live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LnLayout {
    /// `ln_ih_weight`, (G·H)
    pub ih_weight: Range<usize>,
    /// `ln_ih_bias`, (G·H)
    pub ih_bias: Range<usize>,
    /// `ln_hh_weight`, (G·H)
    pub hh_weight: Range<usize>,
    /// `ln_hh_bias`, (G·H)
    pub hh_bias: Range<usize>,
    /// LSTM: `ln_c_weight`, (H)
    pub c_weight: Option<Range<usize>>,
    /// LSTM: `ln_c_bias`, (H)
    pub c_bias: Option<Range<usize>>,
}

/// Every parameter of a configuration, in PyTorch's registration order.
///
/// With layer normalization ([`crate::core::config::Regularizers::layer_norm`]) the gains and
/// biases follow all of PyTorch's parameters, layer by layer, each layer's in the order
/// `ln_ih_weight_l{k}`, `ln_ih_bias_l{k}`, `ln_hh_weight_l{k}`, `ln_hh_bias_l{k}` and, for an
/// LSTM, `ln_c_weight_l{k}`, `ln_c_bias_l{k}` (`ln_ih_weight` etc. for a cell): the buffer
/// starts with exactly the parameters of `nn.LSTM`, and a configuration without layer norm has
/// exactly `nn.LSTM`'s layout.
///
/// LSTM peepholes ([`crate::core::config::CellOptions::peepholes`]) come last, one
/// `weight_peephole_l{k}` (`_reverse`) of shape (3, H) per layer and direction, rows p_i, p_f,
/// p_o.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    entries: Vec<ParamEntry>,
    dirs: Vec<DirLayout>,
    total: usize,
    num_directions: usize,
}

impl ParamLayout {
    /// The layout of `config`, named as a layer or as a cell.
    pub fn new(config: &RnnConfig, naming: Naming) -> ParamLayout {
        let gh = config.mode.gates() * config.hidden_size;
        let d = config.num_directions();
        let mut entries = Vec::new();
        let mut dirs = Vec::new();
        let mut offset = 0;
        for layer in 0..config.num_layers {
            for direction in 0..d {
                let input_size = config.layer_input_size(layer);
                let mut specs = vec![
                    (ParamKind::WeightIh, vec![gh, input_size]),
                    (ParamKind::WeightHh, vec![gh, config.h_out()]),
                ];
                if config.bias {
                    specs.push((ParamKind::BiasIh, vec![gh]));
                    specs.push((ParamKind::BiasHh, vec![gh]));
                }
                if config.mode == Mode::Lstm && config.proj_size > 0 {
                    specs.push((
                        ParamKind::WeightHr,
                        vec![config.proj_size, config.hidden_size],
                    ));
                }
                let mut dl = DirLayout {
                    w_ih: 0..0,
                    w_hh: 0..0,
                    b_ih: None,
                    b_hh: None,
                    w_hr: None,
                    input_size,
                    ln: None,
                    peephole: None,
                };
                for (kind, shape) in specs {
                    let name = param_name(kind, naming, layer, direction);
                    let e = ParamEntry {
                        name,
                        shape,
                        offset,
                        layer,
                        direction,
                        kind,
                    };
                    offset += e.len();
                    let r = e.range();
                    match kind {
                        ParamKind::WeightIh => dl.w_ih = r,
                        ParamKind::WeightHh => dl.w_hh = r,
                        ParamKind::BiasIh => dl.b_ih = Some(r),
                        ParamKind::BiasHh => dl.b_hh = Some(r),
                        ParamKind::WeightHr => dl.w_hr = Some(r),
                        _ => unreachable!("PyTorch's parameters only"),
                    }
                    entries.push(e);
                }
                dirs.push(dl);
            }
        }
        if config.regular.layer_norm {
            for layer in 0..config.num_layers {
                for direction in 0..d {
                    let mut specs = vec![
                        (ParamKind::LnIhWeight, gh),
                        (ParamKind::LnIhBias, gh),
                        (ParamKind::LnHhWeight, gh),
                        (ParamKind::LnHhBias, gh),
                    ];
                    if config.mode == Mode::Lstm {
                        specs.push((ParamKind::LnCWeight, config.hidden_size));
                        specs.push((ParamKind::LnCBias, config.hidden_size));
                    }
                    let mut ln = LnLayout {
                        ih_weight: 0..0,
                        ih_bias: 0..0,
                        hh_weight: 0..0,
                        hh_bias: 0..0,
                        c_weight: None,
                        c_bias: None,
                    };
                    for (kind, n) in specs {
                        let e = ParamEntry {
                            name: param_name(kind, naming, layer, direction),
                            shape: vec![n],
                            offset,
                            layer,
                            direction,
                            kind,
                        };
                        offset += n;
                        let r = e.range();
                        match kind {
                            ParamKind::LnIhWeight => ln.ih_weight = r,
                            ParamKind::LnIhBias => ln.ih_bias = r,
                            ParamKind::LnHhWeight => ln.hh_weight = r,
                            ParamKind::LnHhBias => ln.hh_bias = r,
                            ParamKind::LnCWeight => ln.c_weight = Some(r),
                            ParamKind::LnCBias => ln.c_bias = Some(r),
                            _ => unreachable!("layer-norm parameters only"),
                        }
                        entries.push(e);
                    }
                    dirs[layer * d + direction].ln = Some(ln);
                }
            }
        }
        if config.mode == Mode::Lstm && config.cell.peepholes {
            for layer in 0..config.num_layers {
                for direction in 0..d {
                    let e = ParamEntry {
                        name: param_name(ParamKind::WeightPeephole, naming, layer, direction),
                        shape: vec![3, config.hidden_size],
                        offset,
                        layer,
                        direction,
                        kind: ParamKind::WeightPeephole,
                    };
                    offset += e.len();
                    dirs[layer * d + direction].peephole = Some(e.range());
                    entries.push(e);
                }
            }
        }
        ParamLayout {
            entries,
            dirs,
            total: offset,
            num_directions: d,
        }
    }
    /// All parameters, in registration order.
    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }
    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }
    /// The total number of scalars.
    pub fn total(&self) -> usize {
        self.total
    }
    /// The parameters of layer `layer`, direction `direction`.
    pub fn dir(&self, layer: usize, direction: usize) -> &DirLayout {
        &self.dirs[layer * self.num_directions + direction]
    }
}

/// The name of a parameter: `weight_ih_l0_reverse`, `ln_hh_bias_l1` (layers), `weight_ih` (cells).
fn param_name(kind: ParamKind, naming: Naming, layer: usize, direction: usize) -> String {
    match naming {
        Naming::Cell => kind.stem().to_string(),
        Naming::Layer => format!(
            "{}_l{layer}{}",
            kind.stem(),
            if direction == 1 { "_reverse" } else { "" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_example() {
        // nn.LSTM(10, 20, num_layers=2, bidirectional=True, proj_size=5).state_dict()
        let cfg = RnnConfig::lstm(10, 20)
            .num_layers(2)
            .bidirectional(true)
            .proj_size(5);
        let l = ParamLayout::new(&cfg, Naming::Layer);
        let got: Vec<(String, Vec<usize>)> = l
            .entries()
            .iter()
            .map(|e| (e.name.clone(), e.shape.clone()))
            .collect();
        let mut want = Vec::new();
        for k in 0..2 {
            for sfx in ["", "_reverse"] {
                want.push((format!("weight_ih_l{k}{sfx}"), vec![80, 10]));
                want.push((format!("weight_hh_l{k}{sfx}"), vec![80, 5]));
                want.push((format!("bias_ih_l{k}{sfx}"), vec![80]));
                want.push((format!("bias_hh_l{k}{sfx}"), vec![80]));
                want.push((format!("weight_hr_l{k}{sfx}"), vec![5, 20]));
            }
        }
        assert_eq!(got, want);
        assert_eq!(l.total(), 4 * (800 + 400 + 160 + 100));
    }

    #[test]
    fn layer_norm_follows_pytorch_parameters() {
        let plain = RnnConfig::lstm(3, 4).num_layers(2);
        let ln = plain.clone().layer_norm(true);
        let (a, b) = (
            ParamLayout::new(&plain, Naming::Layer),
            ParamLayout::new(&ln, Naming::Layer),
        );
        assert_eq!(&b.entries()[..a.entries().len()], a.entries());
        let extra: Vec<(&str, usize)> = b.entries()[a.entries().len()..]
            .iter()
            .map(|e| (e.name.as_str(), e.len()))
            .collect();
        let mut want = Vec::new();
        let names = [
            "ln_ih_weight_l0",
            "ln_ih_bias_l0",
            "ln_hh_weight_l0",
            "ln_hh_bias_l0",
            "ln_c_weight_l0",
            "ln_c_bias_l0",
            "ln_ih_weight_l1",
            "ln_ih_bias_l1",
            "ln_hh_weight_l1",
            "ln_hh_bias_l1",
            "ln_c_weight_l1",
            "ln_c_bias_l1",
        ];
        for (k, n) in names.iter().enumerate() {
            want.push((*n, if k % 6 < 4 { 16 } else { 4 }));
        }
        assert_eq!(extra, want);
        assert_eq!(Some(b.total()), ln.checked_num_params());
        let gru = RnnConfig::gru(3, 4).layer_norm(true);
        let g = ParamLayout::new(&gru, Naming::Layer);
        assert_eq!(g.entries().len(), 4 + 4);
        assert_eq!(Some(g.total()), gru.checked_num_params());
    }

    #[test]
    fn cells_have_no_suffix() {
        let cfg = RnnConfig::gru(3, 4).bias(false);
        let l = ParamLayout::new(&cfg, Naming::Cell);
        let names: Vec<&str> = l.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["weight_ih", "weight_hh"]);
    }

    #[test]
    fn peepholes_come_last() {
        let cfg = RnnConfig::lstm(3, 4)
            .bidirectional(true)
            .num_layers(2)
            .peepholes(true);
        let l = ParamLayout::new(&cfg, Naming::Layer);
        let tail: Vec<(&str, &[usize])> = l.entries()[16..]
            .iter()
            .map(|e| (e.name.as_str(), e.shape.as_slice()))
            .collect();
        assert_eq!(
            tail,
            [
                ("weight_peephole_l0", &[3, 4][..]),
                ("weight_peephole_l0_reverse", &[3, 4][..]),
                ("weight_peephole_l1", &[3, 4][..]),
                ("weight_peephole_l1_reverse", &[3, 4][..]),
            ]
        );
        assert_eq!(Some(l.total()), cfg.checked_num_params());
        assert_eq!(l.dir(1, 1).peephole, Some(l.entries()[19].range()));
    }
}
