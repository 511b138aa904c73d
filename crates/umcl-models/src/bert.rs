//! BERT, the text encoder.
//!
//! Paper: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
//! Understanding", NAACL 2019 (arXiv 1810.04805). Reference implementation: Hugging Face
//! transformers 4.57.1, `models/bert/modeling_bert.py` (`BertModel`, post-norm encoder layers).
//!
//! Variable names are the Hugging Face state-dict keys (`embeddings.word_embeddings.weight`,
//! `encoder.layer.{i}.attention.self.query.weight`, ...), so a `model.safetensors` of a
//! `BertModel` loads with [`bert_keys`] and no renaming table. The pooler and pre-training heads
//! are not part of the encoder: their keys are ignored on import, and so is the
//! `embeddings.position_ids` buffer.
//!
//! ```text
//! ids ─► word emb ─┐
//!   (or input embeddings, for prompts)
//!        + position emb + token-type emb ─► LayerNorm ─► dropout ─► N × layer ─► hidden states
//! layer: x ─► self-attention ─► dense ─► dropout ─► LayerNorm(x + ·) = h
//!        h ─► dense ─► GELU ─► dense ─► dropout ─► LayerNorm(h + ·)
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

use crate::error::ModelError;
use crate::import::{strip_prefixes, KeyAction};

/// The activation inside the feed-forward block (`hidden_act` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU (erf), BERT's default.
    Gelu,
    /// GELU with the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
    /// ReLU.
    Relu,
}

impl Activation {
    fn apply(self, xs: &Tensor) -> Tensor {
        match self {
            Activation::Gelu => xs.gelu("none"),
            Activation::GeluNew => xs.gelu("tanh"),
            Activation::Relu => xs.relu(),
        }
    }
}

/// BERT hyper-parameters; the fields and names of a Hugging Face `config.json` (other fields of
/// that file are ignored). Missing fields take BERT-base's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    /// Vocabulary size (30522 for the uncased English vocabulary).
    pub vocab_size: i64,
    /// Width of every layer (768).
    pub hidden_size: i64,
    /// Number of encoder layers (12).
    pub num_hidden_layers: usize,
    /// Attention heads per layer (12); must divide `hidden_size`.
    pub num_attention_heads: i64,
    /// Width of the feed-forward block (3072).
    pub intermediate_size: i64,
    /// Feed-forward activation (gelu).
    pub hidden_act: Activation,
    /// Dropout after embeddings and sub-layers (0.1).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (0.1).
    pub attention_probs_dropout_prob: f64,
    /// Longest input in tokens (512); longer inputs are truncated.
    pub max_position_embeddings: i64,
    /// Number of token types (2).
    pub type_vocab_size: i64,
    /// LayerNorm epsilon (1e-12).
    pub layer_norm_eps: f64,
    /// Id of the padding token (0).
    pub pad_token_id: i64,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self::base()
    }
}

impl BertConfig {
    /// BERT-base: 12 layers, 768 wide, 12 heads (110M parameters).
    pub fn base() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
        }
    }

    /// all-MiniLM-L6-v2: 6 layers, 384 wide, 12 heads.
    pub fn minilm_l6() -> Self {
        Self {
            hidden_size: 384,
            num_hidden_layers: 6,
            intermediate_size: 1536,
            ..Self::base()
        }
    }

    /// The shape a name stands for; the one grammar of text-encoder names: `bert-base`,
    /// `minilm-l6`, or `bert-L<layers>-H<hidden>` (heads of 32 channels, `hidden` a multiple
    /// of 32, feed-forward 4 x hidden).
    ///
    /// ```
    /// use umcl_models::bert::BertConfig;
    /// let small = BertConfig::preset("bert-L2-H128").unwrap();
    /// assert_eq!((small.num_hidden_layers, small.hidden_size), (2, 128));
    /// assert!(BertConfig::preset("bert-L2-H100").is_none());
    /// ```
    pub fn preset(name: &str) -> Option<Self> {
        if let Some(rest) = name.strip_prefix("bert-L") {
            let (layers, hidden) = rest.split_once("-H")?;
            let layers: usize = layers.parse().ok().filter(|l| *l >= 1)?;
            let hidden: i64 = hidden.parse().ok().filter(|h| *h >= 32 && h % 32 == 0)?;
            return Some(BertConfig {
                hidden_size: hidden,
                num_hidden_layers: layers,
                num_attention_heads: hidden / 32,
                intermediate_size: 4 * hidden,
                max_position_embeddings: 512,
                ..BertConfig::base()
            });
        }
        match name {
            "bert-base" => Some(Self::base()),
            "minilm-l6" => Some(Self::minilm_l6()),
            _ => None,
        }
    }

    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that the sizes are positive and the heads divide the width.
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (name, v) in positive {
            if v <= 0 {
                return Err(ModelError::InvalidConfig(format!(
                    "{name} must be positive, got {v}"
                )));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(ModelError::InvalidConfig(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        Ok(())
    }
}

/// The key map for Hugging Face BERT files: strips `module.` and `bert.`, renames legacy
/// LayerNorm `gamma`/`beta` to `weight`/`bias`, and ignores the pooler, the pre-training heads
/// (`cls.`) and the `position_ids` buffer.
pub fn bert_keys(key: &str) -> KeyAction {
    let key = strip_prefixes(key, &["module.", "bert."]);
    if key.starts_with("pooler.") || key.starts_with("cls.") || key.ends_with("position_ids") {
        return KeyAction::Ignore;
    }
    let key = if let Some(stem) = key.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = key.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        key.to_string()
    };
    KeyAction::Load(key)
}

/// How token states become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The last layer's state of the first (`[CLS]`) token.
    Cls,
    /// The mean of the last layer's states over real (unmasked) tokens.
    Mean,
    /// The mean over real tokens of the average of the last `k` layers.
    MeanLastK(usize),
}

/// What the encoder returns.
#[derive(Debug)]
pub struct BertOutput {
    /// The last layer's states, `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor,
    /// The embedding output followed by every layer's output (`num_hidden_layers + 1` tensors),
    /// as Hugging Face's `output_hidden_states`.
    pub hidden_states: Vec<Tensor>,
    /// The attention mask actually used (after truncation), `[batch, seq]`.
    pub attention_mask: Tensor,
}

struct Embeddings {
    word: nn::Embedding,
    position: nn::Embedding,
    token_type: nn::Embedding,
    norm: nn::LayerNorm,
    dropout: f64,
}

impl Embeddings {
    fn new(p: &nn::Path, c: &BertConfig) -> Self {
        let ln = nn::LayerNormConfig {
            eps: c.layer_norm_eps,
            ..Default::default()
        };
        Self {
            word: nn::embedding(
                p / "word_embeddings",
                c.vocab_size,
                c.hidden_size,
                Default::default(),
            ),
            position: nn::embedding(
                p / "position_embeddings",
                c.max_position_embeddings,
                c.hidden_size,
                Default::default(),
            ),
            token_type: nn::embedding(
                p / "token_type_embeddings",
                c.type_vocab_size,
                c.hidden_size,
                Default::default(),
            ),
            norm: nn::layer_norm(p / "LayerNorm", vec![c.hidden_size], ln),
            dropout: c.hidden_dropout_prob,
        }
    }

    /// Word embeddings (already looked up or given) plus position and token type 0.
    fn forward_t(&self, word: &Tensor, train: bool) -> Tensor {
        let seq = word.size()[1];
        let positions = Tensor::arange(seq, (Kind::Int64, word.device()));
        let types = Tensor::zeros([seq], (Kind::Int64, word.device()));
        let xs = word + self.position.forward(&positions) + self.token_type.forward(&types);
        self.norm.forward(&xs).dropout(self.dropout, train)
    }
}

struct SelfAttention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    output: nn::Linear,
    norm: nn::LayerNorm,
    heads: i64,
    attn_dropout: f64,
    dropout: f64,
}

impl SelfAttention {
    fn new(p: &nn::Path, c: &BertConfig) -> Self {
        let h = c.hidden_size;
        let s = p / "self";
        let o = p / "output";
        Self {
            query: nn::linear(&s / "query", h, h, Default::default()),
            key: nn::linear(&s / "key", h, h, Default::default()),
            value: nn::linear(&s / "value", h, h, Default::default()),
            output: nn::linear(&o / "dense", h, h, Default::default()),
            norm: nn::layer_norm(
                &o / "LayerNorm",
                vec![h],
                nn::LayerNormConfig {
                    eps: c.layer_norm_eps,
                    ..Default::default()
                },
            ),
            heads: c.num_attention_heads,
            attn_dropout: c.attention_probs_dropout_prob,
            dropout: c.hidden_dropout_prob,
        }
    }

    /// `mask_bias` is `[batch, 1, 1, seq]`: 0 for real tokens, the dtype's minimum for padding.
    fn forward_t(&self, xs: &Tensor, mask_bias: &Tensor, train: bool) -> Tensor {
        let (b, n, h) = xs.size3().expect("hidden states are [batch, seq, hidden]");
        let d = h / self.heads;
        let split = |t: Tensor| t.view([b, n, self.heads, d]).transpose(1, 2);
        let q = split(self.query.forward(xs));
        let k = split(self.key.forward(xs));
        let v = split(self.value.forward(xs));
        // softmax(q k^T / sqrt(d) + mask_bias) v, with dropout on the probabilities when
        // training, in ATen's fused kernel.
        let dropout = if train { self.attn_dropout } else { 0.0 };
        let ctx = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(mask_bias),
            dropout,
            false,
            None,
            false,
        )
        .transpose(1, 2)
        .contiguous()
        .view([b, n, h]);
        let out = self.output.forward(&ctx).dropout(self.dropout, train);
        self.norm.forward(&(out + xs))
    }
}

struct Layer {
    attention: SelfAttention,
    intermediate: nn::Linear,
    output: nn::Linear,
    norm: nn::LayerNorm,
    act: Activation,
    dropout: f64,
}

impl Layer {
    fn new(p: &nn::Path, c: &BertConfig) -> Self {
        let o = p / "output";
        Self {
            attention: SelfAttention::new(&(p / "attention"), c),
            intermediate: nn::linear(
                p / "intermediate" / "dense",
                c.hidden_size,
                c.intermediate_size,
                Default::default(),
            ),
            output: nn::linear(
                &o / "dense",
                c.intermediate_size,
                c.hidden_size,
                Default::default(),
            ),
            norm: nn::layer_norm(
                &o / "LayerNorm",
                vec![c.hidden_size],
                nn::LayerNormConfig {
                    eps: c.layer_norm_eps,
                    ..Default::default()
                },
            ),
            act: c.hidden_act,
            dropout: c.hidden_dropout_prob,
        }
    }

    fn forward_t(&self, xs: &Tensor, mask_bias: &Tensor, train: bool) -> Tensor {
        let h = self.attention.forward_t(xs, mask_bias, train);
        let ff = self
            .output
            .forward(&self.act.apply(&self.intermediate.forward(&h)))
            .dropout(self.dropout, train);
        self.norm.forward(&(ff + h))
    }
}

/// The BERT encoder (no pooler, no heads).
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    config: BertConfig,
}

impl Bert {
    /// Builds the encoder under `p` (use the var store's root for Hugging Face key names).
    pub fn new(p: &nn::Path, config: &BertConfig) -> Result<Self, ModelError> {
        config.validate()?;
        let enc = p / "encoder" / "layer";
        Ok(Self {
            embeddings: Embeddings::new(&(p / "embeddings"), config),
            layers: (0..config.num_hidden_layers)
                .map(|i| Layer::new(&(&enc / i), config))
                .collect(),
            config: config.clone(),
        })
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The word-embedding table, `[vocab, hidden]`.
    pub fn word_embeddings(&self) -> &Tensor {
        &self.embeddings.word.ws
    }

    /// Looks up word embeddings for token ids `[batch, seq]`; the result can be edited (prompt
    /// vectors spliced in) and passed to [`Bert::forward_embeds`].
    pub fn embed_tokens(&self, input_ids: &Tensor) -> Tensor {
        self.embeddings.word.forward(input_ids)
    }

    /// Encodes token ids `[batch, seq]` with an attention mask of 1 (token) and 0 (padding).
    /// Inputs longer than `max_position_embeddings` are truncated.
    pub fn forward_ids(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<BertOutput, ModelError> {
        let dims = input_ids.size();
        if dims.len() != 2 || input_ids.kind() != Kind::Int64 {
            return Err(ModelError::Input(format!(
                "token ids must be int64 [batch, seq], got {:?} {dims:?}",
                input_ids.kind()
            )));
        }
        let max = self.config.max_position_embeddings;
        if attention_mask.size() != dims {
            return Err(ModelError::Input(format!(
                "attention mask must be {dims:?} like the token ids, got {:?}",
                attention_mask.size()
            )));
        }
        let (ids, mask) = if dims[1] > max {
            (
                input_ids.narrow(1, 0, max),
                attention_mask.narrow(1, 0, max),
            )
        } else {
            (input_ids.shallow_clone(), attention_mask.shallow_clone())
        };
        self.forward_embeds(&self.embed_tokens(&ids), &mask, train)
    }

    /// Encodes input embeddings `[batch, seq, hidden]` in place of word embeddings (position
    /// and token-type embeddings are still added). Inputs longer than
    /// `max_position_embeddings` are truncated.
    pub fn forward_embeds(
        &self,
        inputs_embeds: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<BertOutput, ModelError> {
        let dims = inputs_embeds.size();
        if dims.len() != 3 || dims[2] != self.config.hidden_size {
            return Err(ModelError::Input(format!(
                "input embeddings must be [batch, seq, {}], got {dims:?}",
                self.config.hidden_size
            )));
        }
        if attention_mask.size() != dims[..2] {
            return Err(ModelError::Input(format!(
                "attention mask must be [batch, seq] = {:?}, got {:?}",
                &dims[..2],
                attention_mask.size()
            )));
        }
        let max = self.config.max_position_embeddings;
        let (embeds, mask) = if dims[1] > max {
            (
                inputs_embeds.narrow(1, 0, max),
                attention_mask.narrow(1, 0, max),
            )
        } else {
            (
                inputs_embeds.shallow_clone(),
                attention_mask.shallow_clone(),
            )
        };
        let kind = embeds.kind();
        let min = match kind {
            Kind::Half => -65504.0,
            Kind::BFloat16 => -3.389_531_389_251_535e38,
            Kind::Double => f64::MIN,
            _ => f64::from(f32::MIN),
        };
        let mask_bias = (mask.to_kind(kind).ones_like() - mask.to_kind(kind))
            .unsqueeze(1)
            .unsqueeze(1)
            * min;
        let mut xs = self.embeddings.forward_t(&embeds, train);
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        hidden_states.push(xs.shallow_clone());
        for layer in &self.layers {
            xs = layer.forward_t(&xs, &mask_bias, train);
            hidden_states.push(xs.shallow_clone());
        }
        Ok(BertOutput {
            last_hidden_state: xs,
            hidden_states,
            attention_mask: mask,
        })
    }

    /// One vector per text, `[batch, hidden]`.
    pub fn pool(&self, out: &BertOutput, pooling: Pooling) -> Result<Tensor, ModelError> {
        match pooling {
            Pooling::Cls => Ok(out.last_hidden_state.select(1, 0)),
            Pooling::Mean => Ok(masked_mean(&out.last_hidden_state, &out.attention_mask)),
            Pooling::MeanLastK(k) => {
                let n = out.hidden_states.len() - 1;
                if k == 0 || k > n {
                    return Err(ModelError::InvalidConfig(format!(
                        "mean of the last {k} layers asked of a {n}-layer encoder"
                    )));
                }
                let last: Vec<&Tensor> = out.hidden_states[n + 1 - k..].iter().collect();
                let avg = Tensor::stack(&last, 0).mean_dim(0, false, last[0].kind());
                Ok(masked_mean(&avg, &out.attention_mask))
            }
        }
    }
}

/// Mean over the sequence of `xs` `[batch, seq, d]` where `mask` `[batch, seq]` is 1.
pub fn masked_mean(xs: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.to_kind(xs.kind()).unsqueeze(-1);
    let sum = (xs * &m).sum_dim_intlist(1, false, xs.kind());
    let count = m.sum_dim_intlist(1, false, xs.kind()).clamp_min(1e-9);
    sum / count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_strip_prefixes_and_legacy_names() {
        assert_eq!(
            bert_keys("module.bert.embeddings.LayerNorm.gamma"),
            KeyAction::Load("embeddings.LayerNorm.weight".into())
        );
        assert_eq!(
            bert_keys("bert.encoder.layer.0.output.LayerNorm.beta"),
            KeyAction::Load("encoder.layer.0.output.LayerNorm.bias".into())
        );
        assert_eq!(bert_keys("pooler.dense.weight"), KeyAction::Ignore);
        assert_eq!(bert_keys("cls.predictions.bias"), KeyAction::Ignore);
        assert_eq!(bert_keys("embeddings.position_ids"), KeyAction::Ignore);
    }

    #[test]
    fn config_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{\n  \"hidden_size\": \"wide\"\n}").unwrap();
        let msg = BertConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            msg.contains("config.json") && msg.contains("line 2"),
            "{msg}"
        );
        std::fs::write(&path, "{\"hidden_size\": 100, \"num_attention_heads\": 12}").unwrap();
        let msg = BertConfig::from_file(&path).unwrap_err().to_string();
        assert!(msg.contains("not a multiple"), "{msg}");
    }

    #[test]
    fn truncates_at_max_positions_and_checks_shapes() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let c = BertConfig {
            vocab_size: 50,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 16,
            max_position_embeddings: 6,
            ..BertConfig::base()
        };
        let bert = Bert::new(&vs.root(), &c).unwrap();
        let ids = Tensor::arange(20, (Kind::Int64, tch::Device::Cpu)).view([2, 10]);
        let out = bert.forward_ids(&ids, &ids.ones_like(), false).unwrap();
        assert_eq!(out.last_hidden_state.size(), vec![2, 6, 8]);
        assert_eq!(out.hidden_states.len(), 2);
        let bad = bert.forward_ids(&ids.to_kind(Kind::Float), &ids, false);
        assert!(matches!(bad, Err(ModelError::Input(_))));
        let bad_mask = Tensor::ones([2, 3], (Kind::Int64, tch::Device::Cpu));
        assert!(bert.forward_ids(&ids, &bad_mask, false).is_err());
        assert!(bert.pool(&out, Pooling::MeanLastK(2)).is_err());
    }
}
