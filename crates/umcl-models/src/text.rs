//! A pretrained BERT-family text encoder loaded from a Hugging Face model folder, and sentence
//! embeddings from it (the sentence-transformers recipe: mean pooling, then L2 normalisation).

use std::path::Path;

use tch::{nn, Device, Kind, Tensor};
use umcl_torch_ext::ops::l2_normalize;

use crate::bert::{bert_keys, Bert, BertConfig, Pooling};
use crate::error::ModelError;
use crate::import::{import_safetensors, ImportReport};

/// A BERT encoder with its variables and the report of the import that filled them.
pub struct PretrainedBert {
    /// The variables (Hugging Face key names).
    pub vs: nn::VarStore,
    /// The encoder.
    pub bert: Bert,
    /// What the import loaded, ignored and (with `allow_partial`) left out.
    pub report: ImportReport,
}

impl PretrainedBert {
    /// Loads `dir/config.json` and `dir/model.safetensors` onto `device`, in fp32.
    pub fn load(dir: &Path, device: Device, allow_partial: bool) -> Result<Self, ModelError> {
        let config = BertConfig::from_file(&dir.join("config.json"))?;
        let vs = nn::VarStore::new(device);
        let bert = Bert::new(&vs.root(), &config)?;
        let report = import_safetensors(
            &vs,
            &dir.join("model.safetensors"),
            &bert_keys,
            allow_partial,
        )?;
        Ok(Self { vs, bert, report })
    }

    /// Embeds a batch of tokenized texts (rows of equal length, mask 1 for real tokens), in
    /// eval mode without gradients: one row of `[batch, hidden]` per text, L2-normalised when
    /// `normalize` is set.
    pub fn embed(
        &self,
        input_ids: &[Vec<i64>],
        attention_mask: &[Vec<i64>],
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Tensor, ModelError> {
        let device = self.vs.device();
        let ids = rows_to_tensor(input_ids, device)?;
        let mask = rows_to_tensor(attention_mask, device)?;
        let _guard = tch::no_grad_guard();
        let out = self.bert.forward_ids(&ids, &mask, false)?;
        let pooled = self.bert.pool(&out, pooling)?;
        Ok(if normalize {
            l2_normalize(&pooled)
        } else {
            pooled
        })
    }
}

/// `[rows, len]` int64 tensor from equal-length rows.
pub fn rows_to_tensor(rows: &[Vec<i64>], device: Device) -> Result<Tensor, ModelError> {
    let len = rows.first().map_or(0, Vec::len);
    if let Some(i) = rows.iter().position(|r| r.len() != len) {
        return Err(ModelError::Input(format!(
            "row {i} has {} tokens, row 0 has {len}",
            rows[i].len()
        )));
    }
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_slice(&flat)
        .view([rows.len() as i64, len as i64])
        .to_kind(Kind::Int64)
        .to_device(device))
}
