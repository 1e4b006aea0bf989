//! The spool: a bounded local directory where objects wait, in order, while object storage is
//! unreachable. Each entry is a data file (`{seq}.bin`) and a description (`{seq}.json`, written
//! last, by rename, so an entry without one was never completed and is discarded). Entries
//! survive a restart: `open` finds them again in their order. One uploader takes them from the
//! front; writers append at the back. The in-memory index sits behind a short synchronous lock
//! that is never held across file I/O.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({used} of {max} bytes used)")]
    Full { used: u64, max: u64 },
    #[error("spool {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("spool entry {path} is unreadable: {source}")]
    Entry { path: String, source: serde_json::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.display().to_string(), source }
}

#[derive(Debug)]
struct Entry<T> {
    seq: u64,
    bytes: u64,
    meta: T,
}

struct Index<T> {
    entries: VecDeque<Entry<T>>,
    used: u64,
    next_seq: u64,
}

pub struct Spool<T> {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index<T>>,
}

impl<T: Serialize + DeserializeOwned + Clone> Spool<T> {
    /// Opens (creating) the spool directory and indexes the complete entries left in it.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool<T>, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut found: Vec<(u64, bool)> = Vec::new();
        for item in std::fs::read_dir(dir).map_err(io(dir))? {
            let name = item.map_err(io(dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some((seq, extension)) = name.split_once('.')
                && let Ok(seq) = seq.parse::<u64>()
            {
                found.push((seq, extension == "json"));
            }
        }
        found.sort_unstable();
        let mut index = Index { entries: VecDeque::new(), used: 0, next_seq: 0 };
        for (seq, is_meta) in &found {
            index.next_seq = index.next_seq.max(seq + 1);
            if !is_meta {
                continue;
            }
            let meta_path = dir.join(format!("{seq}.json"));
            let data_path = dir.join(format!("{seq}.bin"));
            let meta = std::fs::read(&meta_path).map_err(io(&meta_path))?;
            let meta: T = serde_json::from_slice(&meta)
                .map_err(|source| SpoolError::Entry { path: meta_path.display().to_string(), source })?;
            let bytes = std::fs::metadata(&data_path).map_err(io(&data_path))?.len();
            index.used += bytes;
            index.entries.push_back(Entry { seq: *seq, bytes, meta });
        }
        // Data files whose description was never written are half-made entries.
        for (seq, _) in found.iter().filter(|(seq, _)| !index.entries.iter().any(|e| e.seq == *seq)) {
            let _ = std::fs::remove_file(dir.join(format!("{seq}.bin")));
            let _ = std::fs::remove_file(dir.join(format!("{seq}.json.tmp")));
        }
        Ok(Spool { dir: dir.to_path_buf(), max_bytes, index: Mutex::new(index) })
    }

    pub fn is_empty(&self) -> bool {
        self.index.lock().unwrap().entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.index.lock().unwrap().entries.len()
    }

    pub fn used_bytes(&self) -> u64 {
        self.index.lock().unwrap().used
    }

    /// Appends an entry; refused when it would take the spool past its bound.
    pub async fn push(&self, meta: T, chunks: &[Bytes]) -> Result<(), SpoolError> {
        let bytes: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        let seq = {
            let mut index = self.index.lock().unwrap();
            if index.used + bytes > self.max_bytes {
                return Err(SpoolError::Full { used: index.used, max: self.max_bytes });
            }
            // Reserved now, so that concurrent writers cannot overshoot the bound together.
            index.used += bytes;
            index.next_seq += 1;
            index.next_seq - 1
        };
        match self.write(seq, &meta, chunks).await {
            Ok(()) => {
                let mut index = self.index.lock().unwrap();
                let at = index.entries.iter().rposition(|e| e.seq < seq).map_or(0, |i| i + 1);
                index.entries.insert(at, Entry { seq, bytes, meta });
                Ok(())
            }
            Err(error) => {
                self.index.lock().unwrap().used -= bytes;
                let _ = tokio::fs::remove_file(self.data_path(seq)).await;
                Err(error)
            }
        }
    }

    async fn write(&self, seq: u64, meta: &T, chunks: &[Bytes]) -> Result<(), SpoolError> {
        use tokio::io::AsyncWriteExt;
        let data_path = self.data_path(seq);
        let mut file = tokio::fs::File::create(&data_path).await.map_err(io(&data_path))?;
        for chunk in chunks {
            file.write_all(chunk).await.map_err(io(&data_path))?;
        }
        file.sync_data().await.map_err(io(&data_path))?;
        let meta_path = self.dir.join(format!("{seq}.json"));
        let temporary = self.dir.join(format!("{seq}.json.tmp"));
        let text = serde_json::to_vec(meta).expect("spool entries serialize");
        tokio::fs::write(&temporary, text).await.map_err(io(&temporary))?;
        tokio::fs::rename(&temporary, &meta_path).await.map_err(io(&meta_path))?;
        Ok(())
    }

    fn data_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq}.bin"))
    }

    /// The oldest entry and its data, without removing it.
    pub async fn front(&self) -> Result<Option<(u64, T, Bytes)>, SpoolError> {
        let front = self.index.lock().unwrap().entries.front().map(|e| (e.seq, e.meta.clone()));
        let Some((seq, meta)) = front else { return Ok(None) };
        let path = self.data_path(seq);
        let data = tokio::fs::read(&path).await.map_err(io(&path))?;
        Ok(Some((seq, meta, Bytes::from(data))))
    }

    /// Removes entry `seq` (the front, once it is safely stored elsewhere).
    pub async fn remove(&self, seq: u64) {
        {
            let mut index = self.index.lock().unwrap();
            if let Some(at) = index.entries.iter().position(|e| e.seq == seq) {
                let entry = index.entries.remove(at).expect("found above");
                index.used -= entry.bytes;
            }
        }
        let _ = tokio::fs::remove_file(self.dir.join(format!("{seq}.json"))).await;
        let _ = tokio::fs::remove_file(self.data_path(seq)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &'static str) -> Vec<Bytes> {
        vec![Bytes::from_static(text.as_bytes())]
    }

    #[tokio::test]
    async fn entries_come_out_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spool: Spool<String> = Spool::open(dir.path(), 1000).unwrap();
        assert!(spool.front().await.unwrap().is_none());
        spool.push("a".into(), &chunks("first")).await.unwrap();
        spool.push("b".into(), &[Bytes::from_static(b"sec"), Bytes::from_static(b"ond")]).await.unwrap();
        assert_eq!((spool.len(), spool.used_bytes()), (2, 11));
        drop(spool);

        // A half-written entry (data without its description) is discarded on open.
        std::fs::write(dir.path().join("7.bin"), b"torn").unwrap();
        let spool: Spool<String> = Spool::open(dir.path(), 1000).unwrap();
        assert_eq!(spool.len(), 2);
        assert!(!dir.path().join("7.bin").exists());
        let (seq, meta, data) = spool.front().await.unwrap().unwrap();
        assert_eq!((meta.as_str(), &data[..]), ("a", &b"first"[..]));
        spool.remove(seq).await;
        let (seq, meta, data) = spool.front().await.unwrap().unwrap();
        assert_eq!((meta.as_str(), &data[..]), ("b", &b"second"[..]));
        spool.remove(seq).await;
        assert!(spool.is_empty());
        assert_eq!(spool.used_bytes(), 0);
        spool.push("c".into(), &chunks("third")).await.unwrap();
        let (seq, ..) = spool.front().await.unwrap().unwrap();
        assert!(seq > 7, "sequence numbers never go back: {seq}");
    }

    #[tokio::test]
    async fn a_full_spool_refuses_more_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let spool: Spool<u32> = Spool::open(dir.path(), 10).unwrap();
        spool.push(1, &chunks("12345678")).await.unwrap();
        let refused = spool.push(2, &chunks("123")).await;
        assert!(matches!(refused, Err(SpoolError::Full { used: 8, max: 10 })), "{refused:?}");
        assert_eq!(spool.len(), 1);
        let (seq, ..) = spool.front().await.unwrap().unwrap();
        spool.remove(seq).await;
        spool.push(2, &chunks("123")).await.unwrap();
    }
}
