//! `otp_send`: delivers a login code by SMS.

use crate::{
    queue::{Job, JobError, QueueName},
    run::{JobCtx, RunJob},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use storage::notifications::{self, Channel, NewNotification};
use time::OffsetDateTime;
use uuid::Uuid;

/// Send the code of `otp_id` to `phone`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendOtp {
    pub otp_id: Uuid,
    /// E.164.
    pub phone: String,
    /// The code, sealed with `KRUG_SECRET_KEY` (base64): job payloads sit in Redis and on
    /// operator screens, and only the SMS itself may carry the code in the clear.
    pub sealed_code: String,
}

impl SendOtp {
    pub fn new(
        otp_id: Uuid,
        phone: String,
        code: &str,
        secrets: &storage::secret::SecretBox,
    ) -> Self {
        Self {
            otp_id,
            phone,
            sealed_code: STANDARD.encode(secrets.seal(code.as_bytes())),
        }
    }
}

/// The SMS text.
pub fn otp_text(code: &str) -> String {
    format!("Свой Круг: код входа {code}. Никому его не сообщайте.")
}

impl Job for SendOtp {
    const QUEUE: QueueName = QueueName::OtpSend;
}

impl RunJob for SendOtp {
    async fn run(self, ctx: JobCtx) -> Result<(), JobError> {
        let env = &ctx.env;
        let Some(otp) = storage::otp::get(&env.db, self.otp_id).await? else {
            tracing::warn!("login code no longer exists; nothing to send");
            return Ok(());
        };
        if otp.consumed_at.is_some() || otp.expires_at <= OffsetDateTime::now_utc() {
            tracing::info!("login code already used or expired; not sending it");
            return Ok(());
        }
        let sealed = STANDARD
            .decode(&self.sealed_code)
            .map_err(|_| JobError::permanent("the sealed code is not base64"))?;
        let code = env
            .secrets
            .open(&sealed)
            .map_err(|_| JobError::permanent("the code was sealed with another KRUG_SECRET_KEY"))?;
        let code = String::from_utf8(code)
            .map_err(|_| JobError::permanent("the sealed code is not text"))?;
        let text = otp_text(&code);
        // Only the development provider keeps the code in the record: it is how a developer
        // (and `krug demo`) reads it. Real providers' records show the text with the code masked.
        let kept = if env.sms.name() == "log" {
            text.clone()
        } else {
            otp_text("******")
        };
        let dedupe_key = format!("otp:{}", self.otp_id);
        if notifications::sent_before(&env.db, &dedupe_key).await? {
            return Ok(());
        }
        let record = NewNotification {
            user_id: None,
            phone: Some(&self.phone),
            email: None,
            channel: Channel::Sms,
            template: "otp",
            title: None,
            body: &kept,
            dedupe_key: &dedupe_key,
            provider: env.sms.name(),
        };
        crate::handlers::notify::sms_and_record(env, &self.phone, &text, &record).await
    }
}
