// Package nodestate holds the node state of the switch behind the interfaces the rest of the switch already
// uses, in two families:
//
//   - Redis-backed, shared by several nodes (RedisSessions, RedisBatches, RedisTxns, RedisCounter and the
//     reversal queue store RedisSAFStore with its node Lease and Takeover), so a terminal that reconnects
//     to another node carries on, STANs stay unique per acquirer and day across nodes, and the reversals of
//     a node that died are drained by a survivor.
//   - Embedded but durable for one node (FileTxns, FileBatches): an append-only log per store, a CRC per
//     record, group-committed fsyncs, replayed at open and compacted when it grows.
//
// Open builds the set of stores from a Config (the switch's `state:` section). See docs/nodestate.md.
package nodestate
