//! IPVS schedulers: rr, wrr, lc, wlc, sh, dh, sed, nq, mh.
