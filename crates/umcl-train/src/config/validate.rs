//! Range checks of every value; errors name the key.

use super::{ConfigError, TrainConfig};

impl TrainConfig {
    /// Checks every value's range; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                reason,
            })
        };
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(key, format!("must be a finite number > 0, got {v}"))
            }
        };
        let non_negative = |key: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(key, format!("must be a finite number >= 0, got {v}"))
            }
        };
        let fraction = |key: &str, v: f64, lo_open: bool| {
            let ok = v.is_finite() && v <= 1.0 && if lo_open { v > 0.0 } else { v >= 0.0 };
            if ok {
                Ok(())
            } else {
                bad(key, format!("must be in [0, 1], got {v}"))
            }
        };
        for (i, source) in self.data.manifests.iter().enumerate() {
            positive(&format!("data.manifests[{i}].weight"), source.weight)?;
            if source.path.as_os_str().is_empty() {
                return bad(&format!("data.manifests[{i}].path"), "is empty".into());
            }
            if self.data.manifests[..i]
                .iter()
                .any(|s| s.path == source.path)
            {
                return bad(
                    &format!("data.manifests[{i}].path"),
                    format!("{} is listed twice", source.path.display()),
                );
            }
        }
        let name = self.run.name.as_str();
        if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
            return bad(
                "run.name",
                format!(
                    "`{name}`: must be a folder name inside run.out_dir (not empty, `.` or `..`, \
                     no slashes)"
                ),
            );
        }
        if self
            .run
            .device
            .parse::<umcl_torch_ext::runtime::DeviceRequest>()
            .is_err()
        {
            return bad(
                "run.device",
                format!("`{}`: expected auto, cpu, cuda or cuda:N", self.run.device),
            );
        }
        for (key, v) in [
            ("run.steps", self.run.steps),
            ("run.log_every", self.run.log_every),
            ("run.checkpoint_every", self.run.checkpoint_every),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        fraction("data.val_fraction", self.data.val_fraction, false)?;
        if self.data.val_fraction >= 1.0 {
            return bad("data.val_fraction", "must be below 1".into());
        }
        for (key, v) in [
            ("data.image_size", self.data.image_size),
            ("data.batch_size", self.data.batch_size),
            ("data.accum_steps", self.data.accum_steps),
            ("data.workers", self.data.workers),
            ("data.max_text_len", self.data.max_text_len),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        for (key, v) in [
            ("data.workers", self.data.workers),
            ("run.threads", self.run.threads),
        ] {
            if v > umcl_data::MAX_THREADS {
                return bad(key, format!("must be at most {}", umcl_data::MAX_THREADS));
            }
        }
        if self.data.image_size < 16 {
            return bad("data.image_size", "must be at least 16".into());
        }
        if !self.data.batch_size.is_multiple_of(self.data.accum_steps) {
            return bad(
                "data.accum_steps",
                format!(
                    "must divide data.batch_size ({}), got {}",
                    self.data.batch_size, self.data.accum_steps
                ),
            );
        }
        if self.data.batch_size < 2 {
            return bad(
                "data.batch_size",
                "a contrastive batch needs at least 2".into(),
            );
        }
        if umcl_models::image::ImageEncoderConfig::preset(&self.model.image).is_none() {
            return bad(
                "model.image",
                format!(
                    "unknown image encoder `{}` (resnet18, resnet34, resnet50, resnet18-w<N>, vit-tiny, vit-small, vit-base, vit<size>-p<patch>-w<width>-d<depth>)",
                    self.model.image
                ),
            );
        }
        if self.model.text_dir.is_none() {
            if umcl_models::bert::BertConfig::preset(&self.model.text_preset).is_none() {
                return bad(
                    "model.text_preset",
                    format!(
                        "unknown text encoder `{}` (bert-base, minilm-l6, bert-L<layers>-H<hidden>)",
                        self.model.text_preset
                    ),
                );
            }
            if self.model.tokenizer.is_none() {
                return bad(
                    "model.tokenizer",
                    "needed when model.text_dir is not given".into(),
                );
            }
        }
        if self.model.embed_dim <= 0 {
            return bad("model.embed_dim", "must be at least 1".into());
        }
        if let Some(p) = self.model.text_dropout {
            if !(0.0..1.0).contains(&p) {
                return bad("model.text_dropout", format!("must be in [0, 1), got {p}"));
            }
        }
        if self.dist.timeout_s == 0 {
            return bad("dist.timeout_s", "must be at least 1".into());
        }
        positive("dist.bucket_mb", self.dist.bucket_mb)?;
        positive("loss.label_temperature", self.loss.label_temperature)?;
        fraction(
            "loss.false_negative_threshold",
            self.loss.false_negative_threshold,
            false,
        )?;
        non_negative("loss.prompt_weight", self.loss.prompt_weight)?;
        positive("optim.lr", self.optim.lr)?;
        non_negative("optim.weight_decay", self.optim.weight_decay)?;
        for (key, v) in [
            ("optim.beta1", self.optim.beta1),
            ("optim.beta2", self.optim.beta2),
        ] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return bad(key, format!("must be in [0, 1), got {v}"));
            }
        }
        positive("optim.eps", self.optim.eps)?;
        fraction("optim.min_lr_ratio", self.optim.min_lr_ratio, false)?;
        non_negative("optim.grad_clip", self.optim.grad_clip)?;
        for (key, v) in [
            ("optim.lr_image", self.optim.lr_image),
            ("optim.lr_text", self.optim.lr_text),
            ("optim.lr_heads", self.optim.lr_heads),
            ("optim.lr_prompts", self.optim.lr_prompts),
        ] {
            non_negative(key, v)?;
        }
        if self.eval.max_samples == 0 {
            return bad("eval.max_samples", "must be at least 1".into());
        }
        let schema = umcl_data::schema::Schema::chest_xray();
        for class in &self.eval.classes {
            if schema.index_of(class).is_none() {
                return bad(
                    "eval.classes",
                    format!("`{class}` is not a key of the chest-xray schema"),
                );
            }
        }
        if self.eval.classes.len() < 2 {
            return bad("eval.classes", "zero-shot needs at least 2 classes".into());
        }
        Ok(())
    }
}
