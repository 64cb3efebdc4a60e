#!/bin/sh
# Regenerates the lab media server's spoken prompts: espeak-ng speaks each text, sox turns it
# into 16 kHz mono, opusenc encodes it as Ogg Opus speech at 16 kbit/s. The .opus files are
# committed (labserver embeds them with include_bytes!), so this only runs when a text changes.
#
# Usage: labserver/prompts/make-prompts.sh   (needs espeak-ng, sox, opus-tools)
set -eu
cd "$(dirname "$0")"
for tool in espeak-ng sox opusenc; do
    command -v "$tool" >/dev/null || { echo "make-prompts: $tool is missing" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# name|text — one prompt a line. Names are the files (NAME.opus) and Prompt::name() in
# labserver/src/mediasrv/prompts.rs.
while IFS='|' read -r name text; do
    [ -z "$name" ] && continue
    espeak-ng -v en-us -s 155 -w "$tmp/$name.wav" "$text"
    # Trim leading/trailing silence a little, resample to 16 kHz mono, leave 100 ms of air.
    sox "$tmp/$name.wav" -r 16000 -c 1 "$tmp/$name-16k.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0.05 0.1 norm -3
    opusenc --quiet --bitrate 16 --speech --comp 10 --serial 1 \
        --title "$name" --comment "TEXT=$text" --comment "GENERATOR=espeak-ng" \
        "$tmp/$name-16k.wav" "$name.opus"
done <<'PROMPTS'
vm-unavailable|The person you are calling is not available. Please leave a message after the tone.
vm-enter-pin|Please enter your PIN, followed by the pound key.
vm-wrong-pin|That PIN is not correct.
vm-you-have|You have
vm-new|new
vm-old|old
vm-messages|messages.
vm-no-messages|You have no messages.
vm-main-menu|To listen to your messages, press 1. To record your greeting, press 3. To hang up, press star.
vm-message-menu|To play this message again, press 1. To delete it, press 7. To save it, press 9. For the next message, press 6. To go back, press star.
vm-deleted|Message deleted.
vm-saved|Message saved.
vm-record-greeting|Record your greeting after the tone, then press the pound key.
vm-greeting-saved|Your greeting has been saved.
vm-goodbye|Goodbye.
digit-0|zero
digit-1|one
digit-2|two
digit-3|three
digit-4|four
digit-5|five
digit-6|six
digit-7|seven
digit-8|eight
digit-9|nine
conf-enter-pin|Please enter the conference PIN, followed by the pound key.
conf-wrong-pin|That PIN is not correct.
conf-locked|This conference is locked.
conf-muted|You are muted.
conf-unmuted|You are no longer muted.
conf-alone|You are the only person in this conference.
ivr-welcome|Welcome to the Tandem lab. For sales, press 1. For support, press 2. To join the lab conference, press 3. For voicemail, press 9.
ivr-sales|Sales. For new customers, press 1. For existing customers, press 2. To go back, press star.
ivr-support|Support. For the operator, press 0. For the technical department, press 1. To go back, press star.
ivr-technical|Technical support. To talk to an engineer, press 1. To leave a message, press 2. To go back, press star.
ivr-invalid|Sorry, that is not a valid choice.
ivr-timeout|Sorry, I did not hear a choice.
ivr-transfer|Please hold while I connect your call.
ivr-goodbye|Thank you for calling. Goodbye.
PROMPTS
echo "make-prompts: $(cat ./*.opus | wc -c) bytes in $(ls ./*.opus | wc -l) prompts"
