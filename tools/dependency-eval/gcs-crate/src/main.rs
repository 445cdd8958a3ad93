//! Conformance of google-cloud-storage 1.21 against what pg2bq's Store needs, on fake-gcs-server.
//! Usage: gcs_eval <endpoint> <bucket> <prefix>
use base64::Engine;
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::{Storage, StorageControl};
use google_cloud_storage::retry_policy::RetryableErrors;
use std::time::{Duration, Instant};

fn report(name: &str, ok: bool, detail: String) {
    println!("{} {name}: {detail}", if ok { "PASS" } else { "FAIL" });
}

fn describe(e: &google_cloud_storage::Error) -> String {
    format!("http={:?} status={:?} io={} transport={} err={e}", e.http_status_code(), e.status().map(|s| s.code), e.is_io(), e.is_transport())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (endpoint, bucket_name, prefix) = (&args[1], &args[2], &args[3]);
    let only = args.get(4).cloned().unwrap_or_default();
    let bucket = format!("projects/_/buckets/{bucket_name}");
    let started = Instant::now();
    let storage = Storage::builder()
        .with_endpoint(endpoint.clone())
        .with_credentials(Anonymous::new().build())
        .with_retry_policy(RetryableErrors.with_time_limit(Duration::from_secs(20)))
        .build()
        .await
        .expect("build Storage");
    report("build Storage client with custom endpoint + anonymous credentials", true, format!("{:?}", started.elapsed()));

    // 1. create-only put (single shot, ifGenerationMatch=0), twice.
    let claim = format!("{prefix}/claim-000001.json");
    let t = Instant::now();
    let first = storage.write_object(&bucket, &claim, bytes::Bytes::from_static(b"{\"holder\":1}")).set_if_generation_match(0).send_buffered().await;
    report("create-only put (first)", first.is_ok(), format!("{:?} in {:?}", first.as_ref().map(|o| (o.size, o.generation)).map_err(describe), t.elapsed()));
    let t = Instant::now();
    let second = storage.write_object(&bucket, &claim, bytes::Bytes::from_static(b"{\"holder\":2}")).set_if_generation_match(0).send_buffered().await;
    let refused = matches!(&second, Err(e) if e.http_status_code() == Some(412));
    report("create-only put (second) refused with 412", refused, format!("{:?} in {:?}", second.as_ref().map(|o| (o.size, o.generation)).map_err(describe), t.elapsed()));
    if only == "put" { return; }

    // 2. resumable multi-chunk upload with CRC32C: 256 KiB chunks, 1 MiB + 100 bytes = 5 chunks.
    let data: Vec<u8> = (0..(4 * 256 * 1024 + 100)).map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let crc = crc32c::crc32c(&data);
    let object = format!("{prefix}/t/part-p0000-s00000.parquet");
    let t = Instant::now();
    let write = storage
        .write_object(&bucket, &object, bytes::Bytes::from(data.clone()))
        .set_if_generation_match(0)
        .with_resumable_upload_threshold(0usize)
        .with_resumable_upload_buffer_size(256 * 1024usize);
    let up = match std::env::var("UNBUFFERED").is_ok() { true => write.send_unbuffered().await, false => write.send_buffered().await };
    let ok = match &up {
        Ok(o) => o.size as usize == data.len() && o.checksums.as_ref().and_then(|c| c.crc32c) == Some(crc),
        Err(_) => false,
    };
    report("resumable upload (send_buffered, 256 KiB buffer: 5 PUTs), CRC32C", ok, format!("{:?} expected size {} crc {crc} in {:?}", up.as_ref().map(|o| (o.size, o.checksums.as_ref().and_then(|c| c.crc32c))).map_err(describe), data.len(), t.elapsed()));
    // 3. get
    let t = Instant::now();
    let got = async {
        let mut r = storage.read_object(&bucket, &object).send().await?;
        let meta = r.object();
        let mut out = Vec::new();
        while let Some(b) = r.next().await { out.extend_from_slice(&b?); }
        Ok::<_, google_cloud_storage::Error>((meta, out))
    }
    .await;
    match &got {
        Ok((meta, out)) => report("get (read_object, JSON API media)", *out == data, format!("{} bytes, highlights size {} crc {:?} in {:?}", out.len(), meta.size, meta.checksums.as_ref().and_then(|c| c.crc32c), t.elapsed())),
        Err(e) => report("get (read_object)", false, describe(e)),
    }
    let missing = storage.read_object(&bucket, format!("{prefix}/nope")).send().await;
    report("get of a missing object is a 404", matches!(&missing, Err(e) if e.http_status_code() == Some(404)), format!("{:?}", missing.map(|_| ()).map_err(|e| describe(&e))));

    let again = storage
        .write_object(&bucket, &object, bytes::Bytes::from_static(b"other"))
        .set_if_generation_match(0)
        .with_resumable_upload_threshold(0usize)
        .send_unbuffered()
        .await;
    report("resumable create-only over existing refused (fake-gcs ignores it; real GCS 412)", again.is_err(), format!("{:?}", again.as_ref().map(|o| o.size).map_err(describe)));

    // 4-6. head, list, delete: StorageControl (gRPC google.storage.v2).
    let control = StorageControl::builder()
        .with_endpoint(endpoint.clone())
        .with_credentials(Anonymous::new().build())
        .with_retry_policy(RetryableErrors.with_time_limit(Duration::from_secs(5)))
        .build()
        .await;
    let control = match control {
        Ok(c) => c,
        Err(e) => {
            report("build StorageControl", false, format!("{e}"));
            return;
        }
    };
    let t = Instant::now();
    let head = control.get_object().set_bucket(&bucket).set_object(&object).send().await;
    report("head (StorageControl::get_object, gRPC)", head.is_ok(), format!("{:?} in {:?}", head.map(|o| (o.size, o.checksums.and_then(|c| c.crc32c))).map_err(|e| describe(&e)), t.elapsed()));
    let t = Instant::now();
    let list = control.list_objects().set_parent(&bucket).set_prefix(format!("{prefix}/")).set_page_size(1).send().await;
    report("list with prefix, page size 1 (StorageControl::list_objects, gRPC)", list.is_ok(), format!("{:?} in {:?}", list.map(|p| (p.objects.len(), p.next_page_token)).map_err(|e| describe(&e)), t.elapsed()));
    let t = Instant::now();
    let del = control.delete_object().set_bucket(&bucket).set_object(&claim).send().await;
    report("delete (StorageControl::delete_object, gRPC)", del.is_ok(), format!("{:?} in {:?}", del.map_err(|e| describe(&e)), t.elapsed()));
    let b64 = base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes());
    println!("(crc32c as GCS JSON reports it: {b64})");
}
