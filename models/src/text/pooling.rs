//! Sentence embeddings from token embeddings: mean pooling under the attention mask, then L2 normalisation
//! (what sentence-transformers does for all-MiniLM-L6-v2), and the [`Embeddings`] matrix they produce.

use super::error::TextError;

/// Averages the token vectors of each row over its real tokens (`mask != 0`), ignoring padding.
///
/// `hidden` is `[batch, seq, dim]` row-major and `mask` is `[batch, seq]`. Padding must not count: a short text
/// padded to a long batch would otherwise be pulled towards the padding vector, and the same text would embed
/// differently alone and in a batch. A row with no real token gets zeros (sentence-transformers clamps the count
/// to 1e-9, which gives the same zeros).
pub fn mean_pool(hidden: &[f32], mask: &[i64], batch: usize, seq: usize, dim: usize) -> Result<Vec<f32>, TextError> {
    if hidden.len() != batch * seq * dim || mask.len() != batch * seq {
        return Err(TextError::Config(format!(
            "mean_pool: {} hidden values and {} mask values do not fit [batch {batch}, seq {seq}, dim {dim}]",
            hidden.len(),
            mask.len()
        )));
    }
    let mut out = vec![0f32; batch * dim];
    for b in 0..batch {
        let acc = &mut out[b * dim..(b + 1) * dim];
        let mut count = 0f32;
        for s in 0..seq {
            if mask[b * seq + s] == 0 {
                continue;
            }
            count += 1.0;
            let token = &hidden[(b * seq + s) * dim..(b * seq + s + 1) * dim];
            for (a, &h) in acc.iter_mut().zip(token) {
                *a += h;
            }
        }
        if count > 0.0 {
            for a in acc.iter_mut() {
                *a /= count;
            }
        }
    }
    Ok(out)
}

/// Scales each `dim`-wide row of `rows` to unit Euclidean length, so that a dot product is a cosine similarity and
/// the head sees inputs of one scale. All-zero rows stay zero (the norm is clamped to 1e-12, as torch does).
pub fn l2_normalize(rows: &mut [f32], dim: usize) {
    if dim == 0 {
        return;
    }
    for row in rows.chunks_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        for v in row.iter_mut() {
            *v /= norm;
        }
    }
}

/// A matrix of embeddings, one row of `dim` floats per text, in the order the texts were given.
///
/// Stored flat (row-major) so that it crosses into the head, the JSON artifact or either ndarray version as a shape
/// plus a slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// Wraps `data` as rows of `dim` floats; `data.len()` must be a multiple of `dim` (and `dim > 0`).
    pub fn from_vec(dim: usize, data: Vec<f32>) -> Result<Self, TextError> {
        if data.len().checked_rem(dim) != Some(0) {
            return Err(TextError::Config(format!(
                "{} values cannot be split into rows of {dim}",
                data.len()
            )));
        }
        Ok(Embeddings { dim, data })
    }

    /// An empty matrix of width `dim`, to [`Embeddings::extend`] batch by batch.
    pub fn empty(dim: usize) -> Self {
        Embeddings { dim, data: Vec::new() }
    }

    /// The width of every row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[f32]> {
        self.data.get(i * self.dim..(i + 1) * self.dim)
    }

    /// The rows in order.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The values, row-major, without copying.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// The rows as `Vec<f32>`s: handy for storage (e.g. a vector column) at the cost of one allocation per row.
    pub fn to_rows(&self) -> Vec<Vec<f32>> {
        self.rows().map(<[f32]>::to_vec).collect()
    }

    /// A `[len, dim]` view in the crate's ndarray (0.16, the one linfa uses).
    // The shape is an invariant every constructor checks, not input: a
    // failure here is a bug in this type.
    #[allow(clippy::expect_used)]
    pub fn view(&self) -> ndarray::ArrayView2<'_, f32> {
        ndarray::ArrayView2::from_shape((self.len(), self.dim), &self.data)
            .expect("invariant: data.len() == len × dim, checked by every constructor")
    }

    /// Appends the rows of `other` (same width).
    pub fn extend(&mut self, other: &Embeddings) -> Result<(), TextError> {
        if other.dim != self.dim {
            return Err(TextError::Dimension {
                expected: self.dim,
                got: other.dim,
            });
        }
        self.data.extend_from_slice(&other.data);
        Ok(())
    }

    /// The rows picked by `indices`, in that order (for splits and reordering); indices past the end are skipped.
    pub fn select(&self, indices: &[usize]) -> Embeddings {
        let mut data = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            if let Some(row) = self.get(i) {
                data.extend_from_slice(row);
            }
        }
        Embeddings { dim: self.dim, data }
    }
}
