"""Online LPM serving: streaming engine, Triton repository builder and adapter, client SDK, probe, bench."""
