//! The real-server agent: hidden VIP, tunnel receiver, allow-list, decapsulation into a TUN.
