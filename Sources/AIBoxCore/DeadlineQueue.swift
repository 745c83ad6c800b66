/// The earliest of many deadlines that move often — every WATCHDOG=1 moves its worker's — so
/// that the loop's next wake-up costs O(log n) per change instead of a look at every worker
/// per turn. A binary heap; an entry made stale by a later `set` of its key is dropped when
/// it reaches the top, and the heap is rebuilt when stale entries outnumber live ones.
public final class DeadlineQueue {
    /// Keys are worker names. Not generic: across modules an unspecialized generic pays a
    /// metadata lookup per call, which cost more than the scan it replaces.
    public typealias Key = String

    private struct Entry {
        var at: Instant
        var key: Key
    }

    private var current: [Key: Instant] = [:]
    private var heap: [Entry] = []

    public init() {}

    /// The key's deadline now (nil: it has none).
    public func set(_ key: Key, _ deadline: Instant?) {
        guard current[key] != deadline else { return }
        current[key] = deadline
        guard let deadline else { return }
        if heap.count >= 2 * current.count + 32 {
            heap = current.map { Entry(at: $0.value, key: $0.key) }
            for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        } else {
            heap.append(Entry(at: deadline, key: key))
            siftUp(heap.count - 1)
        }
    }

    public func deadline(_ key: Key) -> Instant? { current[key] }

    /// The earliest deadline of any key, or nil.
    public func earliest() -> Instant? {
        while let top = heap.first {
            if current[top.key] == top.at { return top.at }
            removeTop()
        }
        return nil
    }

    /// Entries held, live and stale (for tests: it stays bounded).
    public var storedEntries: Int { heap.count }

    private func removeTop() {
        let last = heap.removeLast()
        if heap.isEmpty { return }
        heap[0] = last
        siftDown(0)
    }

    private func siftUp(_ index: Int) {
        var i = index
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].at < heap[parent].at else { return }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private func siftDown(_ index: Int) {
        var i = index
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < heap.count && heap[l].at < heap[smallest].at { smallest = l }
            if r < heap.count && heap[r].at < heap[smallest].at { smallest = r }
            if smallest == i { return }
            heap.swapAt(i, smallest)
            i = smallest
        }
    }
}
