#!/usr/bin/perl
# A Perl worker (Gearman::Worker, Debian's libgearman-client-perl): "perl_upper" upper-cases its workload.
#     perl examples/mixed_languages/worker.pl &
use strict;
use warnings;
use Gearman::Worker;

my $worker = Gearman::Worker->new;
$worker->job_servers(split /,/, $ENV{GEARMAN_SERVER} || '127.0.0.1:4730');
$worker->register_function(perl_upper => sub { my $job = shift; return uc $job->arg });
$worker->work while 1;
