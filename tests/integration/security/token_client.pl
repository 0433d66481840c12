# Perl's Gearman::Client with a gearman-gateway token (docs/security.md): the subclass sends OPTION_REQ
# auth=<token> on every new socket, through the client's own _option_request. Prints what each submit got.
use strict;
use warnings;

package TokenClient;
use parent 'Gearman::Client';

sub _get_js_sock {
    my ($self, $js) = @_;
    my $fresh = !$self->_sock_cache($js, undef, 0);
    my $sock = $self->SUPER::_get_js_sock($js) or return;
    $self->_option_request($sock, "auth=$ENV{GEARMAN_TOKEN}") if $fresh;
    return $sock;
}

package main;

my $client = TokenClient->new(job_servers => [$ARGV[0]]);
for my $function (@ARGV[1 .. $#ARGV]) {
    my $handle = eval { $client->dispatch_background($function, "x") };
    print "$function: ", ($handle ? "queued" : "refused: " . ($@ =~ s/\n//gr)), "\n";
}
