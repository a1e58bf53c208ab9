use super::*;

#[test]
fn push_read_wrap() {
    let (mut tx, mut rx) = local(256, 64).unwrap();
    for i in 0..1000u32 {
        let payload = vec![i as u8; (i % 50) as usize];
        loop {
            match tx.push(1 + (i % 7) as u16, &payload) {
                Ok(()) => break,
                Err(RingError::Full { .. }) => {
                    let _ = tx.publish();
                    let rec = rx.read().unwrap().unwrap();
                    assert!(rec.tag() >= 1);
                    rx.release();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}
