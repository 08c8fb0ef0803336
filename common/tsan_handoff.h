/* Shared floor (library and mim-local): annotations for a hand-off through a gRPC completion
 * queue. What one thread writes before grpc_call_start_batch (or request_call) is read by
 * the thread that gets the tag back from grpc_completion_queue_next; the queue orders
 * the two inside uninstrumented libgrpc, invisible to ThreadSanitizer. HANDOFF_RELEASE
 * before starting the batch and HANDOFF_ACQUIRE on the tag when it comes back state that
 * order. No-ops in builds without ThreadSanitizer. */
#ifndef MIM_COMMON_TSAN_HANDOFF_H
#define MIM_COMMON_TSAN_HANDOFF_H

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MIM_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define MIM_TSAN 1
#endif

#ifdef MIM_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define HANDOFF_RELEASE(p) __tsan_release(p)
#define HANDOFF_ACQUIRE(p) __tsan_acquire(p)
#else
#define HANDOFF_RELEASE(p) ((void)(p))
#define HANDOFF_ACQUIRE(p) ((void)(p))
#endif

#endif
