"""Real-SIP-peer test harness: PJSUA2 phones (``phones.Phone``), SIPp (``sipp``), baresip
(``baresip.Baresip``), tone/FFT helpers (``audio``) and G.711 RTP pcaps (``pcap``)."""
