/// How many sockets bound before connect() the failure programs may remember
/// for each network namespace, and which namespaces get a map at all.
///
/// Each watched namespace has a kernel map of its own, so a census reads
/// only its own namespace's entries and a namespace that fills its map
/// refuses only its own sockets. An empty map still costs its hash buckets
/// (16 bytes per entry it may hold), so maps start small and grow with use;
/// the agent's own namespace, the one it exists for, starts at the most any
/// namespace can need. Namespaces of unprivileged users' user namespaces
/// (any user may make thousands) get smaller maps, and only so many of them,
/// so a tenant can neither starve the host's namespaces nor its memory.
public enum BoundSocketAllowance {
    /// Who a namespace belongs to, as far as its allowance goes.
    public enum Holder: Sendable, Equatable {
        /// The namespace the agent runs in.
        case agent
        /// Owned by the agent's user namespace: pods' and containers' of a
        /// root runtime, `ip netns add`'s.
        case host
        /// In a user namespace an unprivileged user made.
        case tenant
    }

    /// The agent's own namespace's map, from the start: a port range holds
    /// at most 65,536 ports (1 MiB of buckets, as when one map served all).
    public static let agentNamespaceSockets = 65_536
    /// Every other namespace's first map: 16 KiB of buckets, so a host with
    /// thousands of namespaces spends tens of MiB on them at most.
    public static let initialSockets = 1_024
    /// What a host-owned namespace's map grows to: a whole port range.
    public static let hostNamespaceSockets = 65_536
    /// What a tenant's namespace's map grows to.
    public static let tenantNamespaceSockets = 4_096
    /// A map this full (entries over capacity) at a census is replaced by
    /// one `growthFactor` times bigger, up to the holder's maximum.
    public static let growWhenFull = 0.5
    public static let growthFactor = 4
    /// Tenants' namespaces with a map at once; the rest of the kernel's
    /// table of maps (`PB_MAX_WATCHED_NAMESPACES`) stays for host-owned ones.
    public static let tenantNamespacesWatched = 256

    /// The size of a namespace's first map.
    public static func initialCapacity(_ holder: Holder) -> Int {
        holder == .agent ? agentNamespaceSockets : initialSockets
    }

    /// The most a namespace's map may grow to.
    public static func maximumCapacity(_ holder: Holder) -> Int {
        switch holder {
        case .agent: agentNamespaceSockets
        case .host: hostNamespaceSockets
        case .tenant: tenantNamespaceSockets
        }
    }

    /// The size a map holding `remembered` of `capacity` entries should be
    /// replaced by, or nil when it is fine as it is.
    public static func grownCapacity(_ capacity: Int, remembered: Int, holder: Holder) -> Int? {
        let maximum = maximumCapacity(holder)
        guard capacity < maximum, Double(remembered) >= Double(capacity) * growWhenFull else { return nil }
        return min(maximum, capacity * growthFactor)
    }

    /// Whether a namespace not yet watched gets a map, when `watched`
    /// namespaces have one (`watchedTenants` of them tenants') and the
    /// kernel's table holds `limit`. Host-owned namespaces are refused only
    /// when the table is full, which tenants alone cannot make it.
    public static func admits(_ holder: Holder, watched: Int, watchedTenants: Int, limit: Int) -> Bool {
        guard watched < limit else { return false }
        return holder != .tenant || watchedTenants < tenantNamespacesWatched
    }
}
