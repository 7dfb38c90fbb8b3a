"""Writes the first 15 s of testdata/parity/long_16k_pcm16.wav (one model window) to argv[1]:
the default upload of scripts/load-test.sh and scripts/compare-seed.sh."""
import sys
import wave

with wave.open("testdata/parity/long_16k_pcm16.wav") as src, wave.open(sys.argv[1], "wb") as dst:
    dst.setparams(src.getparams())
    dst.writeframes(src.readframes(15 * src.getframerate()))
