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
}

impl ParamKind {
    fn stem(self) -> &'static str {
        match self {
            ParamKind::WeightIh => "weight_ih",
            ParamKind::WeightHh => "weight_hh",
            ParamKind::BiasIh => "bias_ih",
            ParamKind::BiasHh => "bias_hh",
            ParamKind::WeightHr => "weight_hr",
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
}

/// Every parameter of a configuration, in PyTorch's registration order.
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
                };
                for (kind, shape) in specs {
                    let name = match naming {
                        Naming::Cell => kind.stem().to_string(),
                        Naming::Layer => format!(
                            "{}_l{layer}{}",
                            kind.stem(),
                            if direction == 1 { "_reverse" } else { "" }
                        ),
                    };
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
                    }
                    entries.push(e);
                }
                dirs.push(dl);
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
    fn cells_have_no_suffix() {
        let cfg = RnnConfig::gru(3, 4).bias(false);
        let l = ParamLayout::new(&cfg, Naming::Cell);
        let names: Vec<&str> = l.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["weight_ih", "weight_hh"]);
    }
}
