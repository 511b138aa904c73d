//! Continuous prompts: learnable context vectors in the text encoder's embedding space.
//!
//! Paper: the "continuous implicit prompts" of Wang et al., "Unified Medical Image-Text-Label
//! Contrastive Learning With Continuous Prompt" (arXiv 2307.05920), which follow CoOp: Zhou et
//! al., "Learning to Prompt for Vision-Language Models", IJCV 2022 (arXiv 2109.01134; reference
//! implementation KaiyangZhou/CoOp, `trainers/coop.py`, `PromptLearner`).
//!
//! Instead of a hand-written template ("a chest X-ray showing {class}"), each class text is
//!
//! ```text
//! [CLS] v1 v2 ... vM  <class-name tokens>  [SEP]            context before (CoOp "end")
//! [CLS] v1 .. vM/2  <class-name tokens>  .. vM  [SEP]       context around (CoOp "middle")
//! [CLS] <class-name tokens>  v1 v2 ... vM  [SEP]            context after (CoOp "front")
//! ```
//!
//! where `v1..vM` are free vectors of the width of the word embeddings, shared by all classes
//! or one set per class, initialised randomly (normal, std 0.02) or from the word embeddings of a
//! phrase. The sequence goes into the text encoder as input embeddings; the encoder may be
//! frozen (only the context learns) or trained too. [`nearest_words`] reads a learned context
//! back as the vocabulary words nearest to each vector (Euclidean distance, as CoOp does).

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::bert::Bert;
use crate::error::ModelError;

/// Where the context vectors go relative to the class-name tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextPosition {
    /// `ctx class` (CoOp's class token at the end).
    Before,
    /// `ctx[..M/2] class ctx[M/2..]`.
    Around,
    /// `class ctx`.
    After,
}

/// Continuous-prompt hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptConfig {
    /// Number of context vectors M (16). With `init_phrase` it is the phrase's token count.
    #[serde(default = "default_n_ctx")]
    pub n_ctx: usize,
    /// One context per class instead of one shared by all classes.
    #[serde(default)]
    pub class_specific: bool,
    /// Where the context goes.
    #[serde(default = "default_position")]
    pub position: ContextPosition,
    /// Token ids (no special tokens) of an initialisation phrase such as "a chest x-ray of";
    /// `None` initialises randomly.
    #[serde(default)]
    pub init_phrase_ids: Option<Vec<i64>>,
}

fn default_n_ctx() -> usize {
    16
}

fn default_position() -> ContextPosition {
    ContextPosition::Before
}

impl Default for PromptConfig {
    fn default() -> Self {
        Self {
            n_ctx: 16,
            class_specific: false,
            position: ContextPosition::Before,
            init_phrase_ids: None,
        }
    }
}

/// The special tokens a prompt is framed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// `[CLS]` id (101 in the BERT uncased vocabulary).
    pub cls: i64,
    /// `[SEP]` id (102).
    pub sep: i64,
    /// `[PAD]` id (0).
    pub pad: i64,
}

impl Default for SpecialTokens {
    fn default() -> Self {
        Self {
            cls: 101,
            sep: 102,
            pad: 0,
        }
    }
}

/// The learnable context and the class names it frames.
pub struct PromptLearner {
    /// `[M, D]` shared, or `[classes, M, D]` class-specific.
    ctx: Tensor,
    class_ids: Vec<Vec<i64>>,
    special: SpecialTokens,
    config: PromptConfig,
}

impl PromptLearner {
    /// Creates the context variable `ctx` under `p` for the classes whose names tokenize to
    /// `class_ids` (no special tokens). A phrase initialisation copies the phrase's word
    /// embeddings from `bert`.
    pub fn new(
        p: &nn::Path,
        config: &PromptConfig,
        class_ids: Vec<Vec<i64>>,
        special: SpecialTokens,
        bert: &Bert,
    ) -> Result<Self, ModelError> {
        if class_ids.is_empty() || class_ids.iter().any(Vec::is_empty) {
            return Err(ModelError::InvalidConfig(
                "prompts need at least one class and every class name needs a token".into(),
            ));
        }
        let d = bert.config().hidden_size;
        let vocab = bert.config().vocab_size;
        let all_ids = class_ids
            .iter()
            .flatten()
            .chain(config.init_phrase_ids.iter().flatten());
        if let Some(bad) = all_ids.copied().find(|&i| i < 0 || i >= vocab) {
            return Err(ModelError::InvalidConfig(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let mut config = config.clone();
        let n_cls = class_ids.len() as i64;
        let init = match &config.init_phrase_ids {
            Some(ids) if !ids.is_empty() => {
                config.n_ctx = ids.len();
                let _guard = tch::no_grad_guard();
                let ids = Tensor::from_slice(ids).to_device(p.device());
                Some(bert.embed_tokens(&ids.unsqueeze(0)).squeeze_dim(0).detach())
            }
            Some(_) => {
                return Err(ModelError::InvalidConfig(
                    "the prompt initialisation phrase has no tokens".into(),
                ))
            }
            None => None,
        };
        if config.n_ctx == 0 {
            return Err(ModelError::InvalidConfig("n_ctx must be at least 1".into()));
        }
        let m = config.n_ctx as i64;
        let shape: Vec<i64> = if config.class_specific {
            vec![n_cls, m, d]
        } else {
            vec![m, d]
        };
        let ctx = match init {
            Some(phrase) => {
                let value = if config.class_specific {
                    phrase
                        .unsqueeze(0)
                        .expand([n_cls, m, d], false)
                        .contiguous()
                } else {
                    phrase
                };
                p.var_copy("ctx", &value.to_kind(p.kind()))
            }
            None => p.var(
                "ctx",
                &shape,
                nn::Init::Randn {
                    mean: 0.,
                    stdev: 0.02,
                },
            ),
        };
        Ok(Self {
            ctx,
            class_ids,
            special,
            config,
        })
    }

    /// The context vectors: `[M, D]` or `[classes, M, D]`.
    pub fn ctx(&self) -> &Tensor {
        &self.ctx
    }

    /// The configuration (with `n_ctx` set to the phrase length when a phrase initialised it).
    pub fn config(&self) -> &PromptConfig {
        &self.config
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_ids.len()
    }

    /// The prompt of every class as input embeddings `[classes, L, D]` and attention mask
    /// `[classes, L]` (right-padded to the longest class name), ready for
    /// [`Bert::forward_embeds`].
    pub fn prompts(&self, bert: &Bert) -> (Tensor, Tensor) {
        let device = self.ctx.device();
        let m = self.config.n_ctx as i64;
        let longest = self.class_ids.iter().map(Vec::len).max().unwrap_or(0) as i64;
        let len = m + longest + 2;
        let tok = |ids: &[i64]| {
            bert.embed_tokens(&Tensor::from_slice(ids).to_device(device).unsqueeze(0))
                .squeeze_dim(0)
        };
        let (cls, sep) = (tok(&[self.special.cls]), tok(&[self.special.sep]));
        let pad = tok(&[self.special.pad]);
        let mut rows = Vec::with_capacity(self.class_ids.len());
        let mut masks = Vec::with_capacity(self.class_ids.len());
        for (c, ids) in self.class_ids.iter().enumerate() {
            let ctx = if self.config.class_specific {
                self.ctx.get(c as i64)
            } else {
                self.ctx.shallow_clone()
            };
            let name = tok(ids);
            let mut parts = vec![cls.shallow_clone()];
            match self.config.position {
                ContextPosition::Before => parts.extend([ctx, name]),
                ContextPosition::After => parts.extend([name, ctx]),
                ContextPosition::Around => {
                    let half = m / 2;
                    parts.extend([ctx.narrow(0, 0, half), name, ctx.narrow(0, half, m - half)]);
                }
            }
            parts.push(sep.shallow_clone());
            let real = m + ids.len() as i64 + 2;
            if real < len {
                parts.push(pad.expand([len - real, pad.size()[1]], false));
            }
            rows.push(Tensor::cat(&parts, 0));
            let mut mask = vec![1i64; real as usize];
            mask.resize(len as usize, 0);
            masks.push(Tensor::from_slice(&mask));
        }
        (
            Tensor::stack(&rows, 0),
            Tensor::stack(&masks, 0).to_device(device),
        )
    }
}

/// For each context vector (rows of `ctx` `[M, D]`, or `[classes, M, D]` flattened), the `k`
/// vocabulary ids nearest in Euclidean distance to it in `word_embeddings` `[V, D]`, with their
/// distances, nearest first.
pub fn nearest_words(ctx: &Tensor, word_embeddings: &Tensor, k: i64) -> Vec<Vec<(i64, f64)>> {
    let d = word_embeddings.size()[1];
    let ctx = ctx.reshape([-1, d]).to_kind(Kind::Float);
    let words = word_embeddings.to_kind(Kind::Float);
    // compute_mode 2: exact differences, not the faster matrix-product form that loses
    // precision near zero distance.
    let dist = Tensor::cdist(&ctx, &words, 2.0, Some(2));
    let k = k.min(words.size()[0]);
    let (values, indices) = dist.topk(k, -1, false, true);
    (0..ctx.size()[0])
        .map(|i| {
            (0..k)
                .map(|j| (indices.int64_value(&[i, j]), values.double_value(&[i, j])))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bert::{BertConfig, Pooling};
    use tch::Device;

    fn tiny_bert(vs: &nn::VarStore) -> Bert {
        let c = BertConfig {
            vocab_size: 200,
            hidden_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 32,
            ..BertConfig::base()
        };
        Bert::new(&(vs.root() / "text"), &c).unwrap()
    }

    #[test]
    fn layouts_place_context_where_asked() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bert = tiny_bert(&vs);
        // Two classes of 1 and 3 tokens, 4 context vectors: length 4 + 3 + 2 = 9.
        let classes = vec![vec![7], vec![8, 9, 10]];
        for position in [
            ContextPosition::Before,
            ContextPosition::Around,
            ContextPosition::After,
        ] {
            let config = PromptConfig {
                n_ctx: 4,
                position,
                ..Default::default()
            };
            let pl = PromptLearner::new(
                &(vs.root() / format!("{position:?}")),
                &config,
                classes.clone(),
                SpecialTokens::default(),
                &bert,
            )
            .unwrap();
            let (emb, mask) = pl.prompts(&bert);
            assert_eq!(emb.size(), vec![2, 9, 16]);
            assert_eq!(
                Vec::<i64>::try_from(mask.get(0)).unwrap(),
                vec![1, 1, 1, 1, 1, 1, 1, 0, 0]
            );
            let word = |id: i64| {
                bert.embed_tokens(&Tensor::from_slice(&[id]).unsqueeze(0))
                    .squeeze()
            };
            // Where the class-name token of class 0 sits, and where the first context vector sits.
            let (name_at, ctx0_at) = match position {
                ContextPosition::Before => (5, 1),
                ContextPosition::Around => (3, 1),
                ContextPosition::After => (1, 2),
            };
            assert!(emb.get(0).get(name_at).equal(&word(7)), "{position:?}");
            assert!(
                emb.get(0).get(ctx0_at).equal(&pl.ctx().get(0)),
                "{position:?}"
            );
            assert!(emb.get(1).get(0).equal(&word(101)));
            assert!(emb.get(1).get(8).equal(&word(102)));
            let out = bert.forward_embeds(&emb, &mask, false).unwrap();
            assert_eq!(bert.pool(&out, Pooling::Mean).unwrap().size(), vec![2, 16]);
        }
    }

    #[test]
    fn phrase_init_copies_word_embeddings_and_sets_length() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bert = tiny_bert(&vs);
        let config = PromptConfig {
            n_ctx: 16,
            class_specific: true,
            init_phrase_ids: Some(vec![20, 21, 22]),
            ..Default::default()
        };
        let pl = PromptLearner::new(
            &(vs.root() / "prompt"),
            &config,
            vec![vec![5], vec![6]],
            SpecialTokens::default(),
            &bert,
        )
        .unwrap();
        assert_eq!(pl.ctx().size(), vec![2, 3, 16]);
        let phrase = bert
            .embed_tokens(&Tensor::from_slice(&[20i64, 21, 22]).unsqueeze(0))
            .squeeze_dim(0);
        assert!(pl.ctx().get(1).equal(&phrase));
        // Reading the context back names the phrase's words exactly (distance 0).
        let near = nearest_words(&pl.ctx().get(0), bert.word_embeddings(), 1);
        assert_eq!(
            near.iter().map(|v| v[0].0).collect::<Vec<_>>(),
            vec![20, 21, 22]
        );
        assert!(near.iter().all(|v| v[0].1 < 1e-3));
    }

    #[test]
    fn context_learns_with_a_frozen_encoder() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bert = tiny_bert(&vs);
        for (name, var) in vs.variables() {
            assert!(name.starts_with("text."));
            let _ = var.set_requires_grad(false);
        }
        let pl = PromptLearner::new(
            &(vs.root() / "prompt"),
            &PromptConfig::default(),
            vec![vec![5]],
            SpecialTokens::default(),
            &bert,
        )
        .unwrap();
        let (emb, mask) = pl.prompts(&bert);
        let out = bert.forward_embeds(&emb, &mask, false).unwrap();
        // Squared, because a plain sum of LayerNorm outputs with unit gain has zero gradient.
        bert.pool(&out, Pooling::Cls)
            .unwrap()
            .square()
            .sum(Kind::Float)
            .backward();
        let g = pl.ctx().grad();
        assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert!(!bert.word_embeddings().grad().defined());
    }

    #[test]
    fn bad_classes_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bert = tiny_bert(&vs);
        let s = SpecialTokens::default();
        let c = PromptConfig::default();
        assert!(PromptLearner::new(&vs.root(), &c, vec![], s, &bert).is_err());
        assert!(PromptLearner::new(&vs.root(), &c, vec![vec![]], s, &bert).is_err());
        assert!(PromptLearner::new(&vs.root(), &c, vec![vec![999]], s, &bert).is_err());
    }
}
