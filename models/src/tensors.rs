//! What a network's tensors are: their roles, names and shapes ([`ParamInfo`]), grouped per
//! layer by what they are for ([`LayerTensors`]). The names are PyTorch `state_dict` names;
//! [`crate::spec::NetSpec::layer_tensors`] derives them.

/// What a named tensor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    ConvWeight,
    ConvBias,
    NormWeight,
    NormBias,
    /// BatchNorm running mean (a buffer, not trained by gradient).
    RunningMean,
    /// BatchNorm running variance (a buffer).
    RunningVar,
}

impl ParamRole {
    /// Whether the optimiser updates it.
    pub fn trainable(self) -> bool {
        !matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }
}

/// A named tensor of a network, in PyTorch's `state_dict` naming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: ParamRole,
    /// Index of the layer in [`crate::spec::NetSpec::layers`].
    pub layer: usize,
}

/// The tensors of one layer, typed by what they are for. `T` is a [`ParamInfo`] in the spec
/// ([`crate::spec::NetSpec::layer_tensors`], the one place names and shapes are derived) and
/// the tensor itself in the candle parameters (`Params::layers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerTensors<T> {
    /// Convolution weight, PyTorch layout ([`crate::spec::LayerSpec::weight_shape`]).
    pub weight: T,
    /// Convolution bias `[Cout]`, when [`crate::spec::LayerSpec::bias`].
    pub bias: Option<T>,
    /// The norm's tensors, when the layer has a norm.
    pub norm: Option<NormTensors<T>>,
}

/// The tensors of a BatchNorm or (affine) InstanceNorm, each `[C]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormTensors<T> {
    /// γ (`weight`).
    pub weight: T,
    /// β (`bias`).
    pub bias: T,
    /// BatchNorm's running statistics (none for InstanceNorm).
    pub running: Option<RunningStats<T>>,
}

/// BatchNorm's running statistics, buffers not trained by gradient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningStats<T> {
    pub mean: T,
    pub var: T,
}

impl<T> LayerTensors<T> {
    /// Every tensor of the layer in `state_dict` order: conv weight, conv bias, norm weight,
    /// norm bias, running mean, running variance.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let norm = self.norm.as_ref();
        let running = norm.and_then(|n| n.running.as_ref());
        std::iter::once(&self.weight)
            .chain(self.bias.as_ref())
            .chain(norm.map(|n| &n.weight))
            .chain(norm.map(|n| &n.bias))
            .chain(running.map(|r| &r.mean))
            .chain(running.map(|r| &r.var))
    }

    /// The same layer with every tensor passed through `f` (in [`LayerTensors::iter`] order),
    /// stopping at the first error.
    pub fn try_map<U, E>(
        &self,
        mut f: impl FnMut(&T) -> Result<U, E>,
    ) -> Result<LayerTensors<U>, E> {
        let weight = f(&self.weight)?;
        let bias = self.bias.as_ref().map(&mut f).transpose()?;
        let norm = match &self.norm {
            None => None,
            Some(n) => Some(NormTensors {
                weight: f(&n.weight)?,
                bias: f(&n.bias)?,
                running: match &n.running {
                    None => None,
                    Some(r) => Some(RunningStats {
                        mean: f(&r.mean)?,
                        var: f(&r.var)?,
                    }),
                },
            }),
        };
        Ok(LayerTensors { weight, bias, norm })
    }
}

/// Name of the `num_batches_tracked` counter PyTorch keeps beside a BatchNorm's running
/// statistics, given the name of its running mean (as
/// [`crate::spec::NetSpec::layer_tensors`] derives it).
pub fn batches_tracked_name(running_mean: &str) -> String {
    let norm = running_mean
        .strip_suffix(".running_mean")
        .unwrap_or(running_mean);
    format!("{norm}.num_batches_tracked")
}
