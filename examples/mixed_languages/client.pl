#!/usr/bin/perl
# A Perl client of the Python worker: perl examples/mixed_languages/client.pl "hello world"  -> Hello World
use strict;
use warnings;
use Gearman::Client;

my $client = Gearman::Client->new;
$client->job_servers(split /,/, $ENV{GEARMAN_SERVER} || '127.0.0.1:4730');
my $result = $client->do_task('py_title', $ARGV[0] // 'hello world', {timeout => 30});
defined $result or die "client.pl: the job failed\n";
print $$result, "\n";
