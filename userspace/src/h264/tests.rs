//! Unit tests with synthetic streams (see also tests/h264*.rs for the ffmpeg-checked ones).
