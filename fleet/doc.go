// Package fleet is the gateways of one site, sharing polls and history
// through Redis: one replica polls each key for all (the holder of the key's
// lease), every replica with clients of the key receives each event once,
// and an event id issued by any replica resumes exactly on any other.
//
// An Engine is opened from SSEGATE_REDIS_URL; Engine.Shared is what the
// poller uses (poller.Shared): per key of the hub a lease loop, a follower
// whose updates reach the hub through stream.Publisher.Replicate, and turns
// during which this replica polls and appends. Nothing here knows HTTP.
//
//	         clients                      clients
//	            │                            │
//	┌───────────┴──────────┐     ┌───────────┴──────────┐
//	│ replica A            │     │ replica B            │
//	│ lease held: polls ───┼──┐  │ lease not held       │
//	│ follower ◄───────────┼┐ │  │ follower ◄───────────┼┐
//	└──────────────────────┘│ │  └──────────────────────┘│
//	               notify + │ │ append             notify│+ read by id
//	            ┌───────────┴─▼──────────────────────────┴┐
//	            │ Redis: lease, state, events, channels   │
//	            └─────────────────────────────────────────┘
//
// # Data layout
//
// Every name starts with Options.Prefix (default "ssegate:"). A stream key
// is named by an opaque id the caller derives from the key's HMAC (never a
// credential, never a URL), in a hash tag so that Redis Cluster keeps a
// key's names in one slot and each script touches one slot:
//
//	<prefix>{<key>}:lease    string   the holder replica's random token, PX LeaseTime
//	<prefix>{<key>}:state    hash     e epoch, s last id, h tag of the last append,
//	                                  b body, t ETag, m Last-Modified,
//	                                  n bytes of retained events, w last writer's token
//	<prefix>{<key>}:events   stream   one entry per event, id "<event id>-0",
//	                                  fields k kind, d data, h tag of its append
//	<prefix>{<key>}:notify   channel  "<epoch> <previous id> <last id> <tag>" per append
//	<prefix>{<key>}:subs     hash     replica token → "<clients> <expiry ms>", from each lease loop
//	<prefix>nudge            channel  "<replica> <payload>" for every replica
//	<prefix>probe:<replica>  channel  the replica's liveness probe, to itself
//	<prefix>{fleet}:replicas zset     replica token, scored by when its announcement runs out
//	<prefix>{fleet}:secret   string   the key secret (see KeySecret), unless SSEGATE_KEY_SECRET
//
// State and events expire 10 minutes after the last append
// or lease renewal: a key nobody polls is forgotten, as a hub forgets a key
// after its linger. The events hold HistorySize events and HistoryBytes of
// data plus a 48-byte estimate of each event's framing, like the hub's
// in-memory history; an event larger than the byte bound is not retained.
//
// # Scripts
//
//   - acquire: SET NX PX with this replica's token, or PEXPIRE if the
//     token is already there; returns how long the holder's lease has left,
//     so that a waiting replica retries when it runs out. It and renew also
//     record this replica's clients of the key and return the fleet's sum,
//     which the holder's load contract counts.
//   - renew: compare-and-PEXPIRE of the lease, and PEXPIRE of state and
//     events. release: compare-and-DEL.
//   - append: compare-and-append. The writer passes the position it read
//     (epoch, last id, tag) or "first body"; the script refuses
//     (a conflict, and the current position) if another writer appended
//     meanwhile, else XADDs the events with the next ids, trims, stores body
//     and validators, and PUBLISHes the notification. A first body is
//     allowed only without state and draws a new epoch. Two holders for a
//     moment waste a poll; the history is never corrupted.
//   - since: checks epoch and tag, then XRANGE after the position, in the
//     same step; the body too, when asked and the read reaches the newest.
//   - load: the state and every retained event at one instant.
//   - heartbeat: ZADD this replica until now + 5 probe intervals (by the
//     Redis clock), drop the expired, count.
//
// # Delivery
//
// Each replica holds one pub/sub connection, subscribed to its probe
// channel, the nudge channel and the notify channel of every key it
// follows. A notification only says "read"; the follower then reads by id
// from its own position, so it delivers each event once and in order, and
// a lost notification costs a delay, never an event: the next notification,
// or the resync after a reconnection, reads everything after the position.
// The replica's own appends reach its follower without a read.
//
// # What happens when
//
//   - The holder dies or its last client leaves: its lease runs out (or is
//     released) and a replica with clients of the key acquires it within
//     LeaseTime (default 5 s), reads state and polls on from the stored body
//     and validators: no snapshot, conditional requests continue.
//   - Two replicas believe they hold a key (a pause longer than the lease):
//     the second append gets a conflict; it reads state and carries on.
//     A holder steps down a tenth of LeaseTime before its lease may have run
//     out if it cannot renew.
//   - The key's state is lost (FLUSHALL, eviction, failover to an empty
//     replica): the holder's append gets a conflict with no state, writes a
//     first body with a new epoch, and every follower gets a Reset: clients
//     resync with one snapshot, never a gap presented as continuity.
//   - A failover loses the newest appends and a writer reuses their ids in
//     the same epoch: the tags differ, and the first to notice (the old
//     writer's append, or a follower's read) deletes the state, so the next
//     append starts a new epoch as above.
//   - A follower falls behind what Redis retains: Reset.
//   - The pub/sub connection dies, loudly (CLIENT KILL, restart) or
//     silently (a NAT or proxy drops it): the read fails, or the probe (a
//     publish to the replica's own channel every second) is not back
//     within 3 s; the connection is rebuilt, and every follower
//     reads what it missed.
//   - Redis is unreachable: calls fail within Timeout, then at once with
//     ErrDisconnected; Connected is false (gauge ssegate_cluster_connected 0,
//     logged once) and the caller polls alone. The probe loop retries every
//     second; when a probe comes back, Connected is true again and
//     every follower reads. The replica count keeps its last value, so the
//     fleet's upstream budget is not exceeded meanwhile.
//
// # Sizing Redis
//
// Per key: its body, HistorySize events (at most HistoryBytes), a few
// small keys; so about keys × (body + HistoryBytes) of memory. Per poll
// that changes: one script on the holder, one notification, and one read
// per other replica with clients of the key. Per replica: one pub/sub
// connection and a probe and heartbeat per second. Persistence is
// optional: a lost state only costs each client one snapshot.
package fleet
