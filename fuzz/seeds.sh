#!/usr/bin/env bash
# Writes small seed corpora into fuzz/corpus/<target>/ (not committed) from the repo's test
# data and a few hand-made packets. Safe to run again: existing corpus files are kept.
set -euo pipefail
cd "$(dirname "$0")"
root=..
c=corpus
mkdir -p "$c"/{parse_message,rtp_packet,rtcp_compound,sdp_offer,sdes_crypto,srtp_unprotect,dtmf_info,wav_read,jitter_ops,stun_message,msrp_frame,pidf_parse}

cp "$root"/proto/tests/data/rfc4475/*.dat "$root"/proto/tests/data/rfc5118/*.dat "$c/parse_message/"
cp "$root"/proto/tests/data/sdp/*.sdp "$c/sdp_offer/"

# RTP: plain PCMU, marker + CSRCs, header extension, padding.
printf '\x80\x00\x12\x34\x00\x00\x00\xa0\xde\xad\xbe\xef\xff\xfe\xfd\xfc' > "$c/rtp_packet/pcmu"
printf '\x82\xe5\x00\x01\x00\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03\x0a\x0b' > "$c/rtp_packet/csrc-marker"
printf '\x90\x6f\x00\x02\x00\x00\x03\xc0\x11\x22\x33\x44\xbe\xde\x00\x01\x10\xaa\x00\x00\x01\x02' > "$c/rtp_packet/extension"
printf '\xa0\x08\x00\x03\x00\x00\x00\x00\x11\x22\x33\x44\x01\x02\x00\x02' > "$c/rtp_packet/padding"
printf '\x16\xfe\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10' > "$c/rtp_packet/dtls"

# RTCP: SR with one block + SDES CNAME; RR + BYE with reason; APP.
sr='\x81\xc8\x00\x0c\x11\x22\x33\x44\xe8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x05\x00\x00\x03\x20'
block='\x55\x66\x77\x88\x05\x00\x00\x07\x00\x01\x00\x10\x00\x00\x00\x20\x12\x34\x56\x78\x00\x01\x00\x00'
sdes='\x81\xca\x00\x03\x11\x22\x33\x44\x01\x05alice\x00'
printf "$sr$block$sdes" > "$c/rtcp_compound/sr-sdes"
printf '\x80\xc9\x00\x01\x11\x22\x33\x44\x81\xcb\x00\x03\x11\x22\x33\x44\x03bye\x00\x00\x00\x00\x00' > "$c/rtcp_compound/rr-bye"
printf '\x80\xcc\x00\x02\x11\x22\x33\x44name' > "$c/rtcp_compound/app"

# SRTP: mode byte, tamper byte, then an RTP or RTCP packet (see srtp_unprotect.rs).
for mode in 0 1 2 4 5; do
  printf "\\x0$mode\\x07" | cat - "$c/rtp_packet/pcmu" > "$c/srtp_unprotect/rtp-$mode"
  printf "\\x0$((mode + 8))\\x09" | cat - "$c/rtcp_compound/rr-bye" > "$c/srtp_unprotect/rtcp-$mode"
done

cat > "$c/sdes_crypto/lines" <<'LINES'
1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4
2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj KDR=0 WSH=64
3 AEAD_AES_128_GCM inline:UcVnEgzYHvtDVb6SLZqxa8hXx9PCjvgJWnsnNQk4
LINES

printf '\x00Signal=5\r\nDuration=160\r\n' > "$c/dtmf_info/relay"
printf '\x01#' > "$c/dtmf_info/dtmf"
printf '\x00signal= *\nduration=250\n\x05\x8a\x03\x20' > "$c/dtmf_info/relay-event"

# WAV files in the formats the reader knows.
if command -v sox >/dev/null; then
  sox -n -r 8000 -b 16 -c 1 "$c/wav_read/mono16.wav" synth 0.01 sine 440
  sox -n -r 48000 -b 16 -c 2 "$c/wav_read/stereo16.wav" synth 0.002 sine 1000
  sox -n -r 16000 -b 8 -c 1 "$c/wav_read/u8.wav" synth 0.005 sine 300
  sox -n -r 16000 -b 24 -c 1 "$c/wav_read/s24.wav" synth 0.005 sine 300
  sox -n -r 8000 -e floating-point -b 32 -c 1 "$c/wav_read/f32.wav" synth 0.005 sine 300
fi

head -c 256 /dev/urandom > "$c/jitter_ops/random"

# MSRP frames (byte 0 picks where the stream is split): SEND with a body, an AUTH, a 200, an
# interrupted chunk and its continuation.
mkdir -p "$c/msrp_frame" "$c/pidf_parse"
send='MSRP a786hjs2 SEND\r\nTo-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\nFrom-Path: msrp://alice.example.com:7777/iau39soe2843z;tcp\r\nMessage-ID: 87652491\r\nByte-Range: 1-25/25\r\nContent-Type: text/plain\r\n\r\nHey Bob, are you there?\r\n-------a786hjs2$\r\n'
printf "\x80$send" > "$c/msrp_frame/send"
printf '\x40MSRP 49fh AUTH\r\nTo-Path: msrps://relay.example.com:2855;tcp\r\nFrom-Path: msrps://alice.example.com:9892/98cjs;tcp\r\nExpires: 600\r\n-------49fh$\r\nMSRP 49fh 200 OK\r\nTo-Path: msrps://alice.example.com:9892/98cjs;tcp\r\nFrom-Path: msrps://relay.example.com:2855;tcp\r\nUse-Path: msrps://relay.example.com:2855/hjdhfha;tcp\r\nExpires: 600\r\n-------49fh$\r\n' > "$c/msrp_frame/auth"
printf '\x20MSRP d93kswow SEND\r\nTo-Path: msrp://b.example:8888/x;tcp\r\nFrom-Path: msrp://a.example:7777/y;tcp\r\nMessage-ID: 12339sdqwer\r\nByte-Range: 1-10/*\r\nContent-Type: text/plain\r\n\r\nabcdefghij\r\n-------d93kswow+\r\nMSRP op2nc9a SEND\r\nTo-Path: msrp://b.example:8888/x;tcp\r\nFrom-Path: msrp://a.example:7777/y;tcp\r\nMessage-ID: 12339sdqwer\r\nByte-Range: 11-20/20\r\nContent-Type: text/plain\r\n\r\nklmnopqrst\r\n-------op2nc9a$\r\n' > "$c/msrp_frame/chunks"

# PIDF documents from the SIMPLE test data.
cp "$root"/proto/tests/data/simple/{baresip-publish-open,baresip-publish-unknown,freeswitch-on-the-phone,kamailio-pua-busy,linphone-publish,rfc3863-example1,rfc3863-example2,rfc4480-example}.xml "$c/pidf_parse/"
echo "seeds in $(pwd)/$c"
