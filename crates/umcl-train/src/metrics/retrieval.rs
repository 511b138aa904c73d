//! Image <-> text retrieval: recall at k and median rank.

use ndarray::{s, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::{
    bootstrap_ci, cell, check_same_dim, ci_cell, l2_normalized, Interval, MetricsError, Result,
};

/// Recall at 1, 5, 10 (fractions in [0, 1]) and the rank statistics of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecallAtK {
    /// Fraction of queries whose match ranks first.
    pub r1: f64,
    /// Fraction of queries whose match ranks in the top 5.
    pub r5: f64,
    /// Fraction of queries whose match ranks in the top 10.
    pub r10: f64,
    /// Median rank (1-based; the mean of the two middle ranks when the count is even).
    pub median_rank: f64,
    /// Mean rank (1-based).
    pub mean_rank: f64,
    /// Queries whose match tied with another candidate: a duplicated image or a repeated
    /// report ("No acute cardiopulmonary process."). Each tie counts against the query.
    pub tied: usize,
}

/// Bootstrap intervals of one direction's recalls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecallCi {
    /// Recall at 1.
    pub r1: Interval,
    /// Recall at 5.
    pub r5: Interval,
    /// Recall at 10.
    pub r10: Interval,
}

/// Bootstrap intervals of a [`RetrievalResult`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalCi {
    /// Image to text.
    pub i2t: RecallCi,
    /// Text to image.
    pub t2i: RecallCi,
}

/// Retrieval scores in both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalResult {
    /// Number of image-text pairs.
    pub pairs: usize,
    /// Image queries, texts retrieved.
    pub i2t: RecallAtK,
    /// Text queries, images retrieved.
    pub t2i: RecallAtK,
    /// Rank of text i for image query i (1-based).
    pub i2t_ranks: Vec<usize>,
    /// Rank of image i for text query i (1-based).
    pub t2i_ranks: Vec<usize>,
    /// Bootstrap intervals, filled by [`RetrievalResult::with_bootstrap`].
    pub ci: Option<RetrievalCi>,
}

fn recall(ranks: &[usize], idx: &[usize], k: usize) -> f64 {
    idx.iter().filter(|&&i| ranks[i] <= k).count() as f64 / idx.len() as f64
}

fn summarise(ranks: &[usize], tied: usize) -> RecallAtK {
    let all: Vec<usize> = (0..ranks.len()).collect();
    let mut sorted = ranks.to_vec();
    sorted.sort_unstable();
    let m = sorted.len();
    let median_rank = if m % 2 == 1 {
        sorted[m / 2] as f64
    } else {
        (sorted[m / 2 - 1] + sorted[m / 2]) as f64 / 2.0
    };
    RecallAtK {
        r1: recall(ranks, &all, 1),
        r5: recall(ranks, &all, 5),
        r10: recall(ranks, &all, 10),
        median_rank,
        mean_rank: ranks.iter().sum::<usize>() as f64 / m as f64,
        tied,
    }
}

/// Two cosines closer than this are a tie: identical inputs give identical embeddings, whose
/// similarities to a query may still differ in the last bits of a blocked matrix product.
const TIE_EPS: f32 = 1e-6;

/// Rows of queries processed at a time, bounding the similarity block to `BLOCK x N` floats.
const BLOCK: usize = 1024;

/// For each query row q, `1 + #{items j != q : sim(q, j) >= sim(q, q) - TIE_EPS}`: a
/// candidate tied with the match ranks before it. The similarities of a row all come from one
/// matrix product. Also returns how many queries had such a tie.
fn ranks(queries: &Array2<f32>, items: &Array2<f32>) -> (Vec<usize>, usize) {
    let n = queries.nrows();
    let mut out = Vec::with_capacity(n);
    let mut tied = 0;
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let sim = queries.slice(s![start..end, ..]).dot(&items.t());
        for (r, row) in sim.rows().into_iter().enumerate() {
            let q = start + r;
            let own = row[q];
            let (mut above, mut ties) = (0, 0);
            for (j, &v) in row.iter().enumerate() {
                if j == q {
                    continue;
                }
                if v > own + TIE_EPS {
                    above += 1;
                } else if v >= own - TIE_EPS {
                    ties += 1;
                }
            }
            out.push(1 + above + ties);
            tied += usize::from(ties > 0);
        }
        start = end;
    }
    (out, tied)
}

impl RetrievalResult {
    /// Fills [`RetrievalResult::ci`] with bootstrap intervals of the recalls, resampling pairs.
    /// The retrieval pool stays the full set; only which queries count is resampled.
    pub fn with_bootstrap(mut self, resamples: usize, seed: u64) -> Result<Self> {
        let one = |ranks: &[usize]| -> Result<RecallCi> {
            let n = ranks.len();
            Ok(RecallCi {
                r1: bootstrap_ci(n, resamples, seed, |idx| recall(ranks, idx, 1))?,
                r5: bootstrap_ci(n, resamples, seed, |idx| recall(ranks, idx, 5))?,
                r10: bootstrap_ci(n, resamples, seed, |idx| recall(ranks, idx, 10))?,
            })
        };
        self.ci = Some(RetrievalCi {
            i2t: one(&self.i2t_ranks)?,
            t2i: one(&self.t2i_ranks)?,
        });
        Ok(self)
    }

    /// A markdown table: one row per direction, R@1/5/10 (with intervals when computed) and the
    /// median rank.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| direction | R@1 | R@5 | R@10 | median rank | pairs | tied queries |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for (name, r, ci) in [
            ("image to text", &self.i2t, self.ci.map(|c| c.i2t)),
            ("text to image", &self.t2i, self.ci.map(|c| c.t2i)),
        ] {
            let with_ci = |v: f64, i: Option<Interval>| {
                let c = ci_cell(i.as_ref());
                if c.is_empty() {
                    cell(Some(v))
                } else {
                    format!("{} {c}", cell(Some(v)))
                }
            };
            s += &format!(
                "| {name} | {} | {} | {} | {} | {} | {} |\n",
                with_ci(r.r1, ci.map(|c| c.r1)),
                with_ci(r.r5, ci.map(|c| c.r5)),
                with_ci(r.r10, ci.map(|c| c.r10)),
                r.median_rank,
                self.pairs,
                r.tied
            );
        }
        s
    }
}

/// Image <-> text retrieval where image `i` is paired with text `i`.
///
/// Both `[N, D]` matrices are L2-normalised here; similarity is the cosine. The rank of a match
/// is 1 plus the number of other candidates with a similarity at least as high (within
/// 1e-6 of it): a tie counts against the query, so duplicated images or repeated reports
/// cannot inflate the scores (24 samples sharing one image would otherwise all score R@1 = 1).
/// R@k is the fraction of queries whose match ranks at most k; [`RecallAtK::tied`] counts the
/// queries that had a tie.
///
/// ```
/// use ndarray::array;
/// use umcl_train::metrics::retrieval;
/// let images = array![[1.0f32, 0.0], [0.0, 1.0]];
/// let texts = array![[0.0f32, 1.0], [0.1, 1.0]];
/// let r = retrieval(images.view(), texts.view()).unwrap();
/// // cosines: image 0 -> text 0: 0, text 1: 0.0995; image 1 -> text 0: 1, text 1: 0.995.
/// assert_eq!(r.i2t_ranks, vec![2, 2]);
/// // text 0 -> image 0: 0, image 1: 1; text 1 -> image 0: 0.0995, image 1: 0.995.
/// assert_eq!(r.t2i_ranks, vec![2, 1]);
/// assert_eq!(r.t2i.r1, 0.5);
/// ```
pub fn retrieval(
    image_emb: ArrayView2<'_, f32>,
    text_emb: ArrayView2<'_, f32>,
) -> Result<RetrievalResult> {
    let images = l2_normalized(image_emb, "image embeddings")?;
    let texts = l2_normalized(text_emb, "text embeddings")?;
    check_same_dim(image_emb, text_emb, "text embeddings")?;
    if texts.nrows() != images.nrows() {
        return Err(MetricsError::Shape {
            what: "text embeddings",
            expected: format!("{} rows (one text per image)", images.nrows()),
            found: format!("{} rows", texts.nrows()),
        });
    }
    let (i2t_ranks, i2t_tied) = ranks(&images, &texts);
    let (t2i_ranks, t2i_tied) = ranks(&texts, &images);
    Ok(RetrievalResult {
        pairs: images.nrows(),
        i2t: summarise(&i2t_ranks, i2t_tied),
        t2i: summarise(&t2i_ranks, t2i_tied),
        i2t_ranks,
        t2i_ranks,
        ci: None,
    })
}
