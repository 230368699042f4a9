// A lazy leaf iterator over a tree (optree's PyTreeIter), safe to share between threads.
#pragma once

#include <atomic>
#include <mutex>
#include <vector>

#include "optree/common.h"
#include "optree/treespec.h"

namespace optree {

// A mutex whose uncontended lock and unlock are one atomic instruction each (a leaf iterator
// takes it once per leaf); a contended lock() sleeps on the atomic (C++20 wait / notify).
class LightMutex {
 public:
  bool try_lock() noexcept {
    int expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire);
  }
  void lock() noexcept {
    if (!try_lock()) lock_contended();
  }
  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) [[unlikely]]
      wake_one();
  }

 private:
  [[gnu::noinline]] void lock_contended() noexcept {
    // 2: locked, and someone may be waiting for it.
    while (state_.exchange(2, std::memory_order_acquire) != 0) {
      state_.wait(2, std::memory_order_relaxed);
    }
  }
  [[gnu::noinline]] void wake_one() noexcept { state_.notify_one(); }

  std::atomic<int> state_{0};  // 0: free, 1: locked, 2: locked with waiters
};

// Lazy leaf iterator over a tree; each step looks the registry up afresh, except for the dict
// ordering, which stays the one in force at creation. It owns the tree and the leaf predicate.
// Threads may share one: next() calls run one at a time, each thread getting its leaves in
// order; a next() from inside one (the predicate, a flatten function) raises RuntimeError.
class LeafIterator {
 public:
  LeafIterator(PyObject* tree, const FlattenOptions& options);
  Ref next();  // null with no exception set when exhausted

  // Cyclic GC (gc.cpp): report every object held; drop them all (the iterator is then
  // exhausted). Both do nothing while a next() is under way, which holds a reference to the
  // iterator anyway: that thread may be paused mid-step, or be the one collecting.
  int traverse(visitproc visit, void* arg) const noexcept;
  void clear() noexcept;

 private:
  Ref next_locked();
  // Waits for another thread's next() to finish; raises if this thread is the one inside.
  [[gnu::noinline]] void wait_for_turn(PyThreadState* thread);
  // The lock, unless a next() holds it.
  std::unique_lock<LightMutex> try_lock_idle() const noexcept;

  struct Frame {
    std::vector<Ref> children;  // of the container being walked; null once visited
    size_t position = 0;
  };
  std::vector<Frame> stack_;
  Ref root_;
  bool root_done_ = false;
  Ref predicate_;           // options_.leaf_predicate points at it
  FlattenOptions options_;  // dict_insertion_ordered is always set
  mutable LightMutex mutex_;
  std::atomic<PyThreadState*> running_{nullptr};  // the thread inside next(), if any
};

}  // namespace optree
