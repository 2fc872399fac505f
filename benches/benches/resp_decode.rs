//! RESP hot path: decoding a pipeline of requests and encoding an array reply.
//!
//! Run with `cargo bench -p forkless-benches --bench resp_decode`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use forkless_protocol::{Limits, Out, RequestDecoder, RespVersion};

/// Commands in the decoded pipeline, as `redis-benchmark -P 16` would send them.
const PIPELINE_DEPTH: usize = 16;
/// Elements in the encoded array reply, like an `LRANGE 0 99`.
const ARRAY_LEN: usize = 100;

/// `*3\r\n$3\r\nSET\r\n$7\r\nkey:NNN\r\n$5\r\nvalue\r\n`, sixteen times.
fn set_pipeline() -> Vec<u8> {
    let mut out = Out::new(RespVersion::Resp2);
    for key_idx in 0..PIPELINE_DEPTH {
        out.array_len(3);
        out.bulk(b"SET");
        out.bulk(format!("key:{key_idx:03}").as_bytes());
        out.bulk(b"value");
    }
    out.buf.to_vec()
}

fn decode_pipeline(c: &mut Criterion) {
    let pipeline = set_pipeline();
    let mut group = c.benchmark_group("resp_decode");
    group.throughput(Throughput::Elements(PIPELINE_DEPTH as u64));
    group.bench_function("set_pipeline_16", |b| {
        let mut decoder = RequestDecoder::new(Limits::default());
        b.iter_batched(
            || BytesMut::from(&pipeline[..]),
            |mut buf| {
                let mut n_commands = 0;
                while let Ok(Some(argv)) = decoder.decode(&mut buf) {
                    n_commands += argv.len();
                    black_box(argv);
                }
                assert_eq!(n_commands, 3 * PIPELINE_DEPTH);
                buf
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn encode_array(c: &mut Criterion) {
    let elements: Vec<Vec<u8>> = (0..ARRAY_LEN)
        .map(|element_idx| format!("element:{element_idx}").into_bytes())
        .collect();
    let mut group = c.benchmark_group("resp_encode");
    group.throughput(Throughput::Elements(ARRAY_LEN as u64));
    group.bench_function("array_of_100_bulks", |b| {
        let mut out = Out::with_capacity(RespVersion::Resp2, 4096);
        b.iter(|| {
            out.buf.clear();
            out.array_len(elements.len());
            for element in &elements {
                out.bulk(black_box(element));
            }
            black_box(out.len())
        });
    });
    group.finish();
}

criterion_group!(benches, decode_pipeline, encode_array);
criterion_main!(benches);
