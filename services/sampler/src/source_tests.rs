//! The in-process log as a [`RecordSource`](super::RecordSource): assignment from committed
//! offsets, delivery in offset order, pausing, waking on appends, commits that trim the log.

use super::*;
use tailsift_kafka::memlog::MemLog;

fn shared() -> Arc<Shared> {
    let (_, policy) = load_policy(&config::PolicyConfig::default()).unwrap();
    let engine = Engine::new(
        EngineConfig::from_config(&config::DecisionConfig::default(), &config::MemoryConfig::default()),
        ActivePolicy {
            version: 0,
            seed: 0,
            engine: policy,
        },
        Instant::now(),
    );
    let (export_tx, _) = mpsc::channel(1);
    Arc::new(Shared {
        engine: Mutex::new(engine),
        export_tx,
        readback_tx: std::sync::mpsc::sync_channel(1).0,
        decisions: None,
        decisions_topic: String::new(),
        spans_topic: String::new(),
        decisions_replay: 0,
        conn: Default::default(),
        handover_timeout: Duration::from_secs(1),
        resume_lookback: 0,
        rebalancing: Default::default(),
    })
}

fn append(log: &MemLog, partition: i32, n: u8) -> i64 {
    log.append_to(partition, bytes::Bytes::from_static(b"k"), bytes::Bytes::from(vec![n]))
        .unwrap()
}

async fn next(src: &LogSource) -> (i32, i64, u8) {
    let r = tokio::time::timeout(Duration::from_secs(2), src.recv())
        .await
        .expect("a record is delivered")
        .unwrap();
    assert!(r.timestamp_ms.is_some_and(|t| t > 0));
    (r.partition, r.offset, r.value[0])
}

#[tokio::test]
async fn the_log_source_resumes_from_commits_delivers_in_order_pauses_and_trims() {
    let log = Arc::new(MemLog::new(2, 1 << 20));
    for n in 0..6u8 {
        append(&log, i32::from(n % 2), n);
    }
    // Partition 1 was committed up to offset 2 by an earlier owner: it resumes there.
    log.commit(1, 2);
    let shared = shared();
    let src = Arc::new(LogSource::assign_all(log.clone(), &shared));
    let mut owned = shared.engine.lock().unwrap().partitions();
    owned.sort();
    assert_eq!(owned, vec![0, 1], "every partition is assigned");

    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&src).await);
    }
    got.sort();
    assert_eq!(got, vec![(0, 0, 0), (0, 1, 2), (0, 2, 4), (1, 2, 5)]);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), src.recv())
            .await
            .is_err(),
        "nothing more to deliver"
    );

    // Paused: an appended record waits until resumed.
    src.pause(true).unwrap();
    append(&log, 0, 10);
    assert!(tokio::time::timeout(Duration::from_millis(200), src.recv())
        .await
        .is_err());
    src.pause(false).unwrap();
    assert_eq!(next(&src).await, (0, 3, 10));

    // A receiver waiting on an empty log wakes up on the next append.
    let waiting = tokio::spawn({
        let src = src.clone();
        async move { next(&src).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    append(&log, 1, 11);
    assert_eq!(waiting.await.unwrap(), (1, 3, 11));

    // Commits reach the log, which trims below them.
    src.commit(&[(0, 4), (1, 3)], false).unwrap();
    assert_eq!(log.committed(0), Some(4));
    assert_eq!(log.watermarks(0), Some((4, 4)));
    assert_eq!(log.watermarks(1), Some((3, 4)));
    assert!(src.commit(&[(7, 1)], false).is_err(), "unknown partition");
}
