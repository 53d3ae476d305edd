//! The device registry's bucket (`PULSE_DEVICES`, see proto/README.md "Device registry"),
//! created the same way by whoever writes it: the poller, and the load tool standing in for it.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use pulse_proto::subject::{DEVICES_BUCKET, DEVICES_STREAM};

/// How long creating or opening the bucket may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The bucket's stream: the layout of a JetStream key-value bucket (stream `KV_<bucket>` on
/// `$KV.<bucket>.>`, rollups, direct gets), keeping the newest value per key only. Written out
/// rather than created through the client's key-value call, which first reads the account's
/// limits in a form older servers do not answer.
pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: DEVICES_STREAM.to_owned(),
        description: Some(
            "Pulse: the devices each tenant has (key <tenant_id>.<device_id>)".into(),
        ),
        subjects: vec![format!("$KV.{DEVICES_BUCKET}.>")],
        max_messages_per_subject: 1,
        max_bytes: -1,
        max_message_size: -1,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas.max(1),
        ..Default::default()
    }
}

/// Creates the bucket or brings its configuration up to date, and opens it.
pub async fn ensure(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, String> {
    let open = async {
        js.create_or_update_stream(stream_config(replicas))
            .await
            .map_err(|e| e.to_string())?;
        js.get_key_value(DEVICES_BUCKET)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(OPEN_TIMEOUT, open).await {
        Ok(result) => result,
        Err(_) => Err("timed out".into()),
    }
}
