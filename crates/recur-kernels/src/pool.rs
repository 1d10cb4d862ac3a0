//! Reused buffers. A forward or backward pass needs tens of megabytes of scratch; taking it
//! fresh from the system allocator each call maps new pages and faults every one of them in
//! (milliseconds per call). [`Buf`] returns its memory to a bounded free list of its element
//! type when dropped (at most 64 buffers and 2 GiB per type), and [`Buf::any`] /
//! [`Buf::zeroed`] take from it first. [`Pool::clear`] gives the memory back.

use crate::Real;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// A free list of buffers of one element type.
pub struct Pool<T> {
    free: Mutex<Vec<Vec<T>>>,
}

/// At most this many buffers are kept.
const MAX_BUFFERS: usize = 64;
/// At most this many bytes are kept.
const MAX_BYTES: usize = 1 << 31;

impl<T: Real> Pool<T> {
    /// An empty pool.
    pub const fn new() -> Pool<T> {
        Pool {
            free: Mutex::new(Vec::new()),
        }
    }

    /// A buffer of exactly `len` elements whose contents are unspecified (but initialized).
    fn take(&self, len: usize) -> Vec<T> {
        if len > 0 {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            // The smallest buffer that is large enough.
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let mut v = free.swap_remove(i);
                drop(free);
                if v.len() >= len {
                    v.truncate(len);
                } else {
                    v.resize(len, T::ZERO);
                }
                return v;
            }
        }
        vec![T::ZERO; len]
    }

    /// Frees every buffer the pool keeps.
    pub fn clear(&self) {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Bytes the pool keeps.
    pub fn kept_bytes(&self) -> usize {
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.iter()
            .map(|v| v.capacity() * std::mem::size_of::<T>())
            .sum()
    }

    fn give(&self, v: Vec<T>) {
        if v.capacity() == 0 {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push(v);
        // Keep the largest buffers within the bounds.
        let size = |v: &Vec<T>| v.capacity() * std::mem::size_of::<T>();
        while free.len() > MAX_BUFFERS || free.iter().map(size).sum::<usize>() > MAX_BYTES {
            let smallest = free
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i)
                .unwrap();
            free.swap_remove(smallest);
        }
    }
}

impl<T: Real> Default for Pool<T> {
    fn default() -> Self {
        Pool::new()
    }
}

/// A buffer that goes back to its element type's pool when dropped.
#[derive(Debug, Default, PartialEq)]
pub struct Buf<T: Real>(Vec<T>);

impl<T: Real> Buf<T> {
    /// `len` elements with unspecified values: for buffers the caller overwrites entirely.
    pub fn any(len: usize) -> Buf<T> {
        Buf(T::pool().take(len))
    }
    /// `len` zeros.
    pub fn zeroed(len: usize) -> Buf<T> {
        let mut v = T::pool().take(len);
        v.fill(T::ZERO);
        Buf(v)
    }
    /// An empty buffer (for the buffers a configuration does not use).
    pub fn empty() -> Buf<T> {
        Buf(Vec::new())
    }
    /// Takes the values out (the memory leaves the pool).
    pub fn into_vec(mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
    }
}

impl<T: Real> Clone for Buf<T> {
    fn clone(&self) -> Self {
        let mut b = Buf::any(self.0.len());
        b.0.copy_from_slice(&self.0);
        b
    }
}

impl<T: Real> Deref for Buf<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Real> DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Real> Drop for Buf<T> {
    fn drop(&mut self) {
        T::pool().give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_zeroed_on_request() {
        let mut a: Buf<f64> = Buf::any(1000);
        a.fill(7.0);
        let p = a.as_ptr();
        drop(a);
        let b: Buf<f64> = Buf::zeroed(900);
        assert_eq!(b.len(), 900);
        assert!(b.iter().all(|&x| x == 0.0));
        // Another test may race for the pool; reuse is likely, not guaranteed.
        let _ = p;
        let c: Buf<f64> = Buf::any(5);
        assert_eq!(c.len(), 5);
        assert_eq!(c.clone().len(), 5);
        drop(c);
        f64::pool().clear();
        assert_eq!(f64::pool().kept_bytes(), 0);
    }
}
