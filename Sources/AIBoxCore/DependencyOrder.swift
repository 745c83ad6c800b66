/// Ordering from `after`: a worker starts once the workers it names are ready, and stops
/// before them.
public enum DependencyOrder {
    /// A cycle as a list of names (first repeated at the end), or nil.
    public static func findCycle(_ workers: [WorkerDefinition]) -> [String]? {
        let byName = Dictionary(workers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var state: [String: Int] = [:]  // 1 visiting, 2 done
        var stack: [String] = []
        func visit(_ n: String) -> [String]? {
            if state[n] == 2 { return nil }
            if state[n] == 1 {
                let start = stack.firstIndex(of: n)!
                return Array(stack[start...]) + [n]
            }
            state[n] = 1
            stack.append(n)
            for d in byName[n]?.after ?? [] where byName[d] != nil {
                if let c = visit(d) { return c }
            }
            stack.removeLast()
            state[n] = 2
            return nil
        }
        for w in workers {
            if let c = visit(w.name) { return c }
        }
        return nil
    }

    /// Depth of each worker: 0 for none in `after`, else 1 + the deepest dependency.
    /// Stopping goes from the deepest level down. Assumes no cycle.
    public static func levels(_ workers: [WorkerDefinition]) -> [String: Int] {
        let byName = Dictionary(workers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var memo: [String: Int] = [:]
        func depth(_ n: String, _ guardCount: Int) -> Int {
            if let d = memo[n] { return d }
            if guardCount > byName.count { return 0 }
            let d = (byName[n]?.after ?? []).filter { byName[$0] != nil }.map { depth($0, guardCount + 1) + 1 }.max() ?? 0
            memo[n] = d
            return d
        }
        for w in workers { _ = depth(w.name, 0) }
        return memo
    }
}

/// What a reload changes: only the difference is applied.
public struct ReloadPlan: Equatable, Sendable {
    public var added: [String] = []
    public var removed: [String] = []
    public var changed: [String] = []
    public var unchanged: [String] = []

    public init(old: [WorkerDefinition], new: [WorkerDefinition]) {
        let oldByName = Dictionary(old.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newNames = Set(new.map(\.name))
        for n in new {
            if let o = oldByName[n.name] {
                if o == n { unchanged.append(n.name) } else { changed.append(n.name) }
            } else {
                added.append(n.name)
            }
        }
        removed = old.map(\.name).filter { !newNames.contains($0) }
    }
}
