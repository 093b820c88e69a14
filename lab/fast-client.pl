#!/usr/bin/perl
# The fast path of the lab's stand-in command-line clients: `asterisk -rx CMD`, `systemctl VERB
# UNIT...` and `reboot` / `systemctl reboot` as run inside a lab host.
#
# The stand-ins are Node programs (asterisk.mjs, systemctl.mjs), and a Node process needs ~50 ms
# of CPU to start. The real `asterisk -rx` and `systemctl` are small C programs that answer in a
# few milliseconds, and every tool that operates the cluster (hactl, the Ansible playbooks of the
# benchmark) runs them over and over. So the host wrappers run this script first: for these
# hot client forms it speaks the stand-in's own socket protocol itself, byte for byte what the
# Node client does (same output, same exit status, same timeouts); for anything else (the
# daemon, `asterisk -r`, shutdown, the other power verbs, options it does not know) it execs the
# Node program unchanged. Only core Perl (perl-base) is used: Socket, no JSON module.
#
# Usage (from the host wrappers): fast-client.pl NODE SCRIPT.mjs asterisk|systemctl ARGS...
# (for systemctl, ARGS starts with the name it was invoked as, as systemctl.mjs expects).
use strict;
use warnings;
use Socket qw(PF_UNIX SOCK_STREAM pack_sockaddr_un);

my ($node, $script, $kind, @args) = @ARGV;

sub fallback {
  { no warnings "exec"; exec { $node } $node, $script, @args }
  print STDERR "fast-client: cannot run $node: $!\n";
  exit 127;
}

# --- JSON: just what the two protocols need --------------------------------------------------

sub json_str {
  my ($s) = @_;
  $s =~ s/(["\\])/\\$1/g;
  $s =~ s/\n/\\n/g;
  $s =~ s/\r/\\r/g;
  $s =~ s/\t/\\t/g;
  $s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge;
  return qq("$s");
}

# A whole JSON document (what the supervisor's JSON.stringify wrote) into Perl data.
sub json_decode {
  my ($text) = @_;
  pos($text) = 0;
  my $value = json_value(\$text);
  $text =~ /\G\s+/gc;
  die "trailing data\n" if pos($text) != length $text;
  return $value;
}

sub json_value {
  my ($t) = @_;
  $$t =~ /\G\s+/gc;
  if ($$t =~ /\G\{/gc) {
    my %o;
    $$t =~ /\G\s+/gc;
    return \%o if $$t =~ /\G\}/gc;
    while (1) {
      $$t =~ /\G\s+/gc;
      substr($$t, pos($$t), 1) eq q(") or die "object key expected\n";
      my $k = json_value($t);
      $$t =~ /\G\s*:/gc or die "':' expected\n";
      $o{$k} = json_value($t);
      $$t =~ /\G\s+/gc;
      next if $$t =~ /\G,/gc;
      return \%o if $$t =~ /\G\}/gc;
      die "',' or '}' expected\n";
    }
  }
  if ($$t =~ /\G\[/gc) {
    my @a;
    $$t =~ /\G\s+/gc;
    return \@a if $$t =~ /\G\]/gc;
    while (1) {
      push @a, json_value($t);
      $$t =~ /\G\s+/gc;
      next if $$t =~ /\G,/gc;
      return \@a if $$t =~ /\G\]/gc;
      die "',' or ']' expected\n";
    }
  }
  if ($$t =~ /\G"((?:[^"\\]|\\.)*)"/gcs) {
    my $s = $1;
    my %esc = ('"' => '"', '\\' => '\\', '/' => '/', b => "\b", f => "\f", n => "\n", r => "\r", t => "\t");
    $s =~ s{\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|(.))}{
      defined $1 ? chr(0x10000 + ((hex($1) - 0xD800) << 10) + (hex($2) - 0xDC00))
      : defined $3 ? chr(hex $3)
      : exists $esc{$4} ? $esc{$4} : die "bad escape\n"
    }gse;
    return $s;
  }
  return $1 + 0 if $$t =~ /\G(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)/gc;
  return 1 if $$t =~ /\Gtrue/gc;
  return 0 if $$t =~ /\Gfalse/gc;
  return undef if $$t =~ /\Gnull/gc;
  die "bad JSON\n";
}

# --- the socket ------------------------------------------------------------------------------

sub connect_unix {
  my ($path) = @_;
  socket(my $fh, PF_UNIX, SOCK_STREAM, 0) or return undef;
  connect($fh, pack_sockaddr_un($path)) or return undef;
  binmode $fh;
  return $fh;
}

sub send_all {
  my ($fh, $bytes) = @_;
  while (length $bytes) {
    my $n = syswrite($fh, $bytes);
    return 0 unless defined $n;
    substr($bytes, 0, $n, '');
  }
  return 1;
}

# Wait up to $ms for $fh to be readable; then read. Returns the bytes, '' at end of stream, undef
# on timeout or error.
sub read_some {
  my ($fh, $ms) = @_;
  my $rin = '';
  vec($rin, fileno($fh), 1) = 1;
  my $n = select(my $rout = $rin, undef, undef, $ms / 1000);
  return undef if $n <= 0;
  my $got = sysread($fh, my $buf, 65536);
  return defined $got ? $buf : undef;
}

# --- asterisk -rx CMD ------------------------------------------------------------------------

sub asterisk {
  # The forms the operators and the tools use; everything else goes to the Node client.
  my $cmd;
  if (@args == 2 && ($args[0] eq '-rx' || $args[0] eq '-x')) { $cmd = $args[1] }
  elsif (@args == 3 && $args[0] eq '-r' && $args[1] eq '-x') { $cmd = $args[2] }
  else { fallback() }
  my $ctl = '/var/run/asterisk/asterisk.ctl';
  my $silence = $ENV{HACTL_LAB_RX_TIMEOUT_MS} // 60000;
  $silence = 60000 unless $silence =~ /^\d+(?:\.\d+)?$/;
  my $fh = connect_unix($ctl);
  if (!$fh) {
    print STDERR "Unable to connect to remote asterisk (does $ctl exist?)\n";
    exit 1;
  }
  my $req = '{"op":"cli","cmd":' . json_str($cmd) . "}\n";
  utf8::encode($req);
  # As the Node client: once connected, whatever happens ends with what was printed and exit 0.
  exit 0 unless send_all($fh, $req);
  binmode STDOUT;
  $| = 1;
  while (1) {
    my $buf = read_some($fh, $silence);
    last if !defined $buf || $buf eq '';
    print STDOUT $buf;
  }
  exit 0;
}

# --- systemctl VERB [UNIT...] ----------------------------------------------------------------

# One request to the host's supervisor; its answer (a hash), or undef when it did not answer.
sub supervisor {
  my ($dir, $msg) = @_;
  utf8::encode($msg);
  my $fh = connect_unix("$dir/supervisor.sock");
  return undef unless $fh && send_all($fh, $msg);
  # The Node client waits up to 10 minutes for the answer line (a start can take that long).
  my $buf = '';
  my $deadline = time + 600;
  while (index($buf, "\n") < 0) {
    my $left = $deadline - time;
    return undef if $left <= 0;
    my $got = read_some($fh, $left * 1000);
    return undef if !defined $got || $got eq '';
    $buf .= $got;
  }
  my $line = substr($buf, 0, index($buf, "\n"));
  utf8::decode($line);
  my $r = eval { json_decode($line) };
  return ref $r eq 'HASH' ? $r : undef;
}

sub no_bus {
  print STDERR "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
    . "Failed to connect to bus: Host is down\n";
  exit 1;
}

# `reboot` and `systemctl reboot`, now: what systemctl.mjs's power() does.
sub reboot_now {
  my ($dir) = @_;
  my $r = supervisor($dir, qq({"op":"power","action":"reboot","delayMs":0}\n)) // no_bus();
  if (!$r->{ok}) {
    binmode STDERR, ':utf8';
    print STDERR 'Failed to reboot system: ' . ($r->{error} // 'undefined') . "\n";
    exit 1;
  }
  exit 0;
}

sub systemctl {
  my ($invoked, @rest) = @args;
  my $dir = $ENV{HACTL_LAB_HOST_DIR};
  fallback() unless defined $invoked && defined $dir && length $dir;
  if ($invoked =~ m{(?:^|/)reboot$}) {
    fallback() if @rest;
    reboot_now($dir);
  }
  fallback() unless $invoked =~ m{(?:^|/)systemctl$};
  my ($quiet, $no_block, $now) = (0, 0, 0);
  my (@props, @words);
  for (my $i = 0; $i < @rest; $i++) {
    my $a = $rest[$i];
    if ($a eq '-q' || $a eq '--quiet') { $quiet = 1 }
    elsif ($a eq '--no-block') { $no_block = 1 }
    elsif ($a eq '--now') { $now = 1 }
    elsif ($a eq '-p' || $a eq '--property') { push @props, split /,/, ($rest[++$i] // '') }
    elsif ($a =~ /^--property=(.*)$/s) { push @props, split /,/, $1 }
    elsif ($a =~ /^-p(.+)$/s) { push @props, split /,/, $1 }
    elsif ($a =~ /^(?:-n|--lines|-o|--output|-t|--type|--state)$/) { $i++ }
    elsif ($a =~ /^-/) { next }
    else { push @words, $a }
  }
  my $verb = shift @words;
  fallback() unless defined $verb;
  reboot_now($dir) if $verb eq 'reboot' && !@words && !$quiet && !$no_block && !$now && !@props;
  fallback() if $verb =~ /^(?:reboot|poweroff|halt|kexec)$/;
  @props = grep { length } @props;
  my $msg = '{"op":"systemctl","verb":' . json_str($verb)
    . ',"units":[' . join(',', map { json_str($_) } @words) . ']'
    . ',"quiet":' . ($quiet ? 'true' : 'false')
    . ',"noBlock":' . ($no_block ? 'true' : 'false')
    . ',"now":' . ($now ? 'true' : 'false')
    . ',"properties":[' . join(',', map { json_str($_) } @props) . "]}\n";
  my $r = supervisor($dir, $msg) // no_bus();
  binmode STDOUT, ':utf8';
  binmode STDERR, ':utf8';
  print STDOUT $r->{stdout} if defined $r->{stdout} && length $r->{stdout};
  print STDERR $r->{stderr} if defined $r->{stderr} && length $r->{stderr};
  exit(defined $r->{code} ? $r->{code} : 1);
}

if ($kind eq 'asterisk') { asterisk() }
elsif ($kind eq 'systemctl') { systemctl() }
fallback();
