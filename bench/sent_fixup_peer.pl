#!/usr/bin/perl
# The peer mailopsd's Sent fixup is measured against: the seed's copy-to-sent.pl approach,
# re-created from its description (reference/seed-configure-mail-server.txt), since the
# original is not available: one process per sent message (what an Exim pipe starts), scan
# the headers of every file in Sent/new for the message's Exim id, add Bcc = recipients not in
# To/Cc (naive split on ", "), rewrite the file IN PLACE (whole file in memory), rename it to
# cur/ with :2,S. No fsync, no symlink checks. For benchmarking only: do NOT deploy this.
# Usage: sent_fixup_peer.pl SENT_DIR EXIM_ID "RECIPIENTS"
use strict;
use warnings;

my ($sent, $id, $rcpts) = @ARGV;
opendir(my $dh, "$sent/new") or die "opendir: $!";
for my $name (readdir $dh) {
    next if $name =~ /^\./;
    my $path = "$sent/new/$name";
    open(my $fh, '<', $path) or next;
    local $/;
    my $data = <$fh>;
    close $fh;
    my ($head, $body) = split(/\n\n/, $data, 2);
    next unless $head =~ /\bid \Q$id\E;/;
    my $unfolded = $head;
    $unfolded =~ s/\n[ \t]+/ /g;
    my $visible = join(' ', $unfolded =~ /^(?:To|Cc):(.*)$/mgi);
    my @bcc = grep { index(lc $visible, lc $_) < 0 } split(/, /, $rcpts);
    $head .= "\nBcc: " . join(', ', @bcc) if @bcc && $head !~ /^Bcc:/mi;
    open(my $out, '>', $path) or die "write: $!";
    print $out $head, "\n\n", (defined $body ? $body : '');
    close $out;
    rename($path, "$sent/cur/$name:2,S") or die "rename: $!";
    last;
}
