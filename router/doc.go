// Package router holds the routing tables (rules on channel, message class, processing code, BIN ranges and
// card type), load-balancing strategies, endpoint health, atomic hot reload and explain.
package router
