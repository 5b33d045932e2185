//! [`Dataset`]: a view (all images, or a subset such as the training or held-out split) of
//! 8-bit images kept in memory or in a prepared file, read one image at a time and turned into
//! values in [-1, 1] on the way out.

use super::decode::{to_unit_range, to_unit_range_mirrored};
use super::prepared::{Fingerprint, PreparedFile};
use anyhow::{bail, Result};
use std::sync::Arc;

/// Where the bytes are.
#[derive(Debug)]
pub(crate) enum Store {
    /// Images back to back (small sets: the embedded digits, eval's `--data`).
    Memory(Vec<u8>),
    /// A prepared file, read with positioned reads.
    File(PreparedFile),
}

/// What a store holds, for [`Dataset::new`].
pub(crate) struct Info {
    pub count: usize,
    pub channels: usize,
    pub size: usize,
    pub description: String,
    pub skipped: usize,
    pub labels: Option<Vec<u8>>,
    pub fingerprint: Fingerprint,
}

/// A data set of 8-bit images, CHW, `channels` × `size` × `size` each (see the module
/// documentation). Cloning shares the bytes.
#[derive(Clone, Debug)]
pub struct Dataset {
    store: Arc<Store>,
    /// Store index of each image of this view; `None` is every image in store order.
    view: Option<Arc<Vec<usize>>>,
    /// Images in this view.
    pub len: usize,
    pub channels: usize,
    pub size: usize,
    /// One line: format, path, image count, e.g. "MNIST IDX train-images-idx3-ubyte.gz (9000
    /// images, 28×28 → 32×32, 1 channel)".
    pub description: String,
    /// Files or records that could not be decoded and were skipped when it was prepared.
    pub skipped: usize,
    /// Class label of each image of the view, where the format carries them (MNIST).
    pub labels: Option<Vec<u8>>,
    /// Fingerprint of the whole store (every image and label, not only this view's).
    pub fingerprint: Fingerprint,
}

impl Dataset {
    /// Every image of `store`, as `info` describes them.
    pub(crate) fn new(store: Store, info: Info) -> Self {
        Self {
            store: Arc::new(store),
            view: None,
            len: info.count,
            channels: info.channels,
            size: info.size,
            description: info.description,
            skipped: info.skipped,
            labels: info.labels,
            fingerprint: info.fingerprint,
        }
    }

    /// Values per image: `channels · size · size`.
    pub fn sample_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// The images at positions `indices` of this view (in that order), described as `what`.
    pub fn select(&self, indices: &[usize], description: String) -> Dataset {
        let view: Vec<usize> = indices.iter().map(|&i| self.store_index(i)).collect();
        Dataset {
            store: Arc::clone(&self.store),
            len: view.len(),
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            view: Some(Arc::new(view)),
            description,
            ..self.clone()
        }
    }

    fn store_index(&self, i: usize) -> usize {
        match &self.view {
            Some(v) => v[i],
            None => i,
        }
    }

    /// Image `i` of the view as bytes into `out` (`sample_len` long).
    pub fn read_u8(&self, i: usize, out: &mut [u8]) -> Result<()> {
        if i >= self.len {
            bail!("image {i} of a data set of {}", self.len);
        }
        let k = self.store_index(i);
        match &*self.store {
            Store::Memory(bytes) => {
                let n = self.sample_len();
                out.copy_from_slice(&bytes[k * n..(k + 1) * n]);
                Ok(())
            }
            Store::File(f) => f.read(k, out),
        }
    }

    /// Image `i` of the view as values in [-1, 1] into `out`, mirrored left to right when
    /// `mirror`.
    pub fn read(&self, i: usize, mirror: bool, out: &mut [f32]) -> Result<()> {
        let mut bytes = vec![0u8; self.sample_len()];
        self.read_u8(i, &mut bytes)?;
        match mirror {
            false => to_unit_range(&bytes, out),
            true => to_unit_range_mirrored(&bytes, self.size, out),
        }
        Ok(())
    }

    /// Image `i` of the view as values in [-1, 1].
    pub fn image(&self, i: usize) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.sample_len()];
        self.read(i, false, &mut out)?;
        Ok(out)
    }

    /// The images at `indices` of the view, back to back, as values in [-1, 1], after checking
    /// that they fit in the memory available.
    pub fn gather(&self, indices: &[usize]) -> Result<Vec<f32>> {
        use wgan_models::limits;
        let n = self.sample_len();
        let what = format!("{} images of {n} values", indices.len());
        let values = limits::count(&what, &[indices.len(), n])?;
        limits::check_memory(
            &what,
            limits::bytes(&what, values, 4)?,
            "use fewer images (--n)",
        )?;
        let mut out = vec![0f32; values];
        for (k, &i) in indices.iter().enumerate() {
            self.read(i, false, &mut out[k * n..(k + 1) * n])?;
        }
        Ok(out)
    }

    /// Every image of the view, back to back, as values in [-1, 1] (memory checked first).
    pub fn images(&self) -> Result<Vec<f32>> {
        self.gather(&(0..self.len).collect::<Vec<_>>())
    }

    /// Fails when the prepared file under this data set was truncated, rewritten or replaced
    /// since it was opened (see [`PreparedFile::check_unchanged`]).
    pub fn check_unchanged(&self) -> Result<()> {
        match &*self.store {
            Store::Memory(_) => Ok(()),
            Store::File(f) => f.check_unchanged(),
        }
    }

    /// Bytes of pixels kept in this process's memory (0 for a prepared file).
    pub fn resident_bytes(&self) -> usize {
        match &*self.store {
            Store::Memory(b) => b.len(),
            Store::File(_) => 0,
        }
    }
}
